"""BatchBridge: image files of a directory (one-shot or --watch) into Kafka, checkpointed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bridges import metrics
from bridges.checkpoint import CheckpointThread, checkpoint_path
from bridges.errors import FileRefused, FileTooLarge
from bridges.lifecycle import Bridge
from bridges.progress import Progress
from bridges.publisher import ByteBudget, ImageMessage, KafkaPublisher
from bridges.scan import Found, Refused, read_file, scan, source_id_for_root
from flowforge.core.envelope import content_digest
from flowforge.core.errors import Stopped
from flowforge.core.formats import sniff_format
from flowforge.core.settings import Settings

log = logging.getLogger(__name__)

NAME = "batch"
NOT_AN_IMAGE = "not_an_image"
# Exit codes of `flowforge bridge batch` (2, usage or settings, comes from the CLI).
EXIT_OK = 0  # every matching file published or already done
EXIT_REJECTED = 1  # some files rejected (dead-lettered or refused), or the bridge failed
EXIT_INCOMPLETE = 3  # stopped (SIGTERM, Ctrl-C) before every file was handled
# Not ready when images wait for Kafka and none was acknowledged for this long.
STALL_SECONDS = 30.0
# In --watch mode, a file that could not be read is tried again after this long (or once it
# changes), so a fixed permission is picked up without flooding the log.
RETRY_REFUSED_S = 60.0
# A scan's files are gone through on the event loop this many at a time, then it takes a turn
# for the rest (web pages, acknowledgements), so a directory of 100,000 files does not stall it.
PACE = 1000


@dataclass
class Tally:
    """What a run did with the files it matched."""

    published: int = 0
    skipped: int = 0
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)
    dead_lettered: set[str] = dataclasses.field(default_factory=set)
    unfinished: int = 0
    published_bytes: int = 0

    def line(self, seconds: float) -> str:
        """The one-line summary: published / skipped as done / rejected by reason."""
        reasons = ", ".join(
            f"{reason} {n}{' [DLQ]' if reason in self.dead_lettered else ''}"
            for reason, n in sorted(self.rejected.items())
        )
        rejected = sum(self.rejected.values())
        rate = self.published / seconds if seconds > 0 else 0.0
        text = (
            f"published {self.published}, skipped {self.skipped} (already done), "
            f"rejected {rejected}{f' ({reasons})' if reasons else ''}"
        )
        if self.unfinished:
            text += f", not handled {self.unfinished} (stopped)"
        mib = self.published_bytes / 1024 / 1024
        return f"{text}; {mib:.1f} MiB in {seconds:.1f}s ({rate:.1f} files/s)"


class BatchBridge(Bridge):
    """Publishes the files under ``root`` that match the patterns, each once: a SQLite
    checkpoint records a file after Kafka acknowledged it, so a re-run (or a run after a
    crash) publishes only what is new, changed or unacknowledged. Files that are not images
    (magic bytes), empty or over the record limit go to the DLQ with a reason; files outside
    the root (symlinks), unreadable or changing while read are reported, counted and left for
    the next run. One-shot by default; ``watch`` keeps scanning."""

    name = NAME

    def __init__(
        self,
        settings: Settings,
        root: Path,
        *,
        watch: bool = False,
        patterns: tuple[str, ...] | None = None,
        recursive: bool | None = None,
        source_id: str | None = None,
        publisher: KafkaPublisher | None = None,
        progress_stream: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.batch = settings.batch
        self.root = root
        self.real_root = str(root.resolve())
        self.watch = watch
        self.patterns = patterns or self.batch.patterns
        self.recursive = self.batch.recursive if recursive is None else recursive
        self.source_id = source_id or self.batch.source_id or source_id_for_root(root)
        self.publisher = publisher or KafkaPublisher(
            settings.kafka, settings.bridge, bridge_name=NAME
        )
        self.progress_stream = progress_stream or sys.stderr
        self.tally = Tally()
        self.exit_code = EXIT_OK if watch else EXIT_INCOMPLETE
        self.summary = ""
        self.checkpoint: CheckpointThread | None = None
        self._started = False
        self._root_ok = True
        self._last_scan = 0.0
        self._in_flight: set[str] = set()
        # What the bridge remembers per file, forgotten in --watch mode once a scan no longer
        # finds the file, so memory follows the files present, not all that came and went.
        self._refused: dict[str, tuple[str, tuple[int, int] | None, float]] = {}
        self._seen: dict[str, tuple[int, int]] = {}  # file versions counted as seen
        self._decided: dict[str, tuple[int, int]] = {}  # watch: versions skipped or taken
        self._progress: Progress | None = None
        self._began = time.monotonic()
        self._failures: list[BaseException] = []
        # One-shot: what the checkpoint records for the files matched (path -> size, mtime).
        self._recorded: dict[str, tuple[int, int]] | None = None
        # The files read and not yet done hold at most the bridge's in-flight bytes (or one
        # larger file alone), however many slots FLOWFORGE_BATCH_CONCURRENCY gives.
        self._reading = ByteBudget(settings.bridge.in_flight_bytes, gauge=None)

    # --- lifecycle ---------------------------------------------------------------------

    async def setup(self, stop: asyncio.Event) -> None:
        """Open (and lock) the checkpoint of this root on its thread, then connect to Kafka."""
        path = checkpoint_path(
            self.settings.home, self.real_root, self.source_id, self.settings.kafka.topic_raw
        )
        self.checkpoint = await CheckpointThread.open(path)
        await self.publisher.start(stop)
        self._started = True
        log.info(
            "%s %s as source %r (patterns %s, %s)",
            "watching" if self.watch else "publishing", self.real_root, self.source_id,
            ",".join(self.patterns), "recursive" if self.recursive else "top level only",
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """One-shot: publish every matching file not done yet, then return. Watch: scan every
        FLOWFORGE_BATCH_POLL_INTERVAL_S and publish files once they settled, until ``stop``."""
        self._began = time.monotonic()
        if self.watch:
            await self._watch(stop)
        else:
            await self._once(stop)

    async def cleanup(self) -> None:
        """Finish the progress bar, flush and close the publisher, close the checkpoint."""
        if self._progress is not None:
            self._progress.close()
        await self.publisher.stop()
        if self.checkpoint is not None:
            await self.checkpoint.close()

    def readiness(self) -> tuple[bool, str]:
        """Ready: connected to Kafka, Kafka acknowledging, and (watch) the root scanned lately."""
        if not self._started:
            return False, "connecting to Kafka"
        ok, why = self.publisher.kafka_health(STALL_SECONDS)
        if not ok:
            return False, why
        if self.watch:
            if not self._root_ok:
                return False, f"cannot read {self.real_root}"
            age = time.monotonic() - self._last_scan
            if age > max(10.0, 5 * self.batch.poll_interval_s):
                return False, f"no scan of {self.real_root} finished for {age:.0f}s"
        return True, f"{self.tally.published} published, {why}"

    # --- one-shot ----------------------------------------------------------------------

    async def _once(self, stop: asyncio.Event) -> None:
        assert self.checkpoint is not None
        items = await asyncio.to_thread(self._scan)
        matched: list[Found] = []
        for index, item in enumerate(items):
            await _take_turn(index)
            if isinstance(item, Refused):
                self._refuse(item.rel, item.reason, item.detail)
                continue
            self._count_seen(item)
            matched.append(item)
        # The checkpoint is this run's alone (locked): a file it has no row for cannot have
        # been published with the same content, so no lookup per file is needed.
        self._recorded = recorded = await self.checkpoint.recorded_among([f.rel for f in matched])
        done = {f.rel for f in matched if recorded.get(f.rel) == f.signature}
        todo: list[Found] = []
        for item in matched:
            if item.rel in done:
                self._skip()
            else:
                todo.append(item)
        log.info(
            "%d files match: %d to read, %d already done, %d refused",
            len(todo) + self.tally.skipped + sum(self.tally.rejected.values()),
            len(todo), self.tally.skipped, sum(self.tally.rejected.values()),
        )  # fmt: skip
        self._progress = Progress(len(todo), self.progress_stream)
        slots = asyncio.Semaphore(self.batch.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        for index, found in enumerate(todo):
            await _acquire_or_stop(slots, stop)
            if stop.is_set():
                self.tally.unfinished += len(todo) - index
                break
            self._spawn(self._handle(found, stop, slots), tasks, stop)
        if tasks:
            await asyncio.wait(tasks)
        self._progress.close()
        self._raise_failure()
        self._finish()

    # --- watch -------------------------------------------------------------------------

    async def _watch(self, stop: asyncio.Event) -> None:
        assert self.checkpoint is not None
        slots = asyncio.Semaphore(self.batch.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        previous: dict[str, tuple[int, int]] = {}
        while not stop.is_set():
            items = await asyncio.to_thread(self._scan)
            self._last_scan = time.monotonic()
            now = time.time()
            current: dict[str, tuple[int, int]] = {}
            refused: set[str] = set()
            candidates: list[Found] = []
            for index, item in enumerate(items):
                await _take_turn(index)
                if isinstance(item, Refused):
                    refused.add(item.rel)
                    self._refuse_once(item.rel, item.reason, item.detail, None)
                    continue
                current[item.rel] = item.signature
                self._count_seen(item)
                if item.rel in self._in_flight or self._decided.get(item.rel) == item.signature:
                    continue
                candidates.append(item)
            del items
            self._forget_gone(current, refused)
            done = await self.checkpoint.unchanged_among([(c.rel, c.signature) for c in candidates])
            for index, item in enumerate(candidates):
                await _take_turn(index)
                if item.rel in done:
                    self._decided[item.rel] = item.signature
                    self._skip()
                    continue
                settled = now - item.mtime_ns / 1e9 >= self.batch.settle_s
                if previous.get(item.rel) != item.signature or not settled:
                    continue  # maybe still being written: wait for the next scan
                if self._refused_recently(item.rel, item.signature):
                    continue
                await _acquire_or_stop(slots, stop)
                if stop.is_set():
                    break
                self._decided[item.rel] = item.signature
                self._spawn(self._handle(item, stop, slots), tasks, stop)
            previous = current
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.batch.poll_interval_s)
        if tasks:
            log.info("finishing %d files handed to Kafka", len(tasks))
            await asyncio.wait(tasks)
        self._raise_failure()
        self._finish()

    def _spawn(
        self,
        work: Coroutine[Any, Any, None],
        tasks: set[asyncio.Task[None]],
        stop: asyncio.Event,
    ) -> None:
        """Run ``work`` as a task; an unexpected error stops the run and is raised at its end."""

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self._failures.append(task.exception())  # type: ignore[arg-type]
                stop.set()

        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(done)

    def _raise_failure(self) -> None:
        if self._failures:
            raise self._failures[0]

    def _forget_gone(self, present: dict[str, tuple[int, int]], refused: set[str]) -> None:
        """Forget the files this scan did not find (deleted, moved away), keeping those under a
        directory it could not read; a scan that could not read the root forgets nothing."""
        if not self._root_ok:
            return
        under = tuple(rel + "/" for rel in refused)
        memories: tuple[dict[str, Any], ...] = (self._seen, self._decided, self._refused)
        for memory in memories:
            gone = memory.keys() - present.keys() - refused
            for rel in gone:
                if not (under and rel.startswith(under)):
                    del memory[rel]

    def _refused_recently(self, rel: str, signature: tuple[int, int]) -> bool:
        entry = self._refused.get(rel)
        if entry is None:
            return False
        _reason, seen, at = entry
        return seen == signature and time.monotonic() - at < RETRY_REFUSED_S

    # --- one file ----------------------------------------------------------------------

    def _scan(self) -> list[Found | Refused]:
        items = list(scan(self.root, self.patterns, recursive=self.recursive))
        root_ok = not any(isinstance(i, Refused) and i.rel == "." for i in items)
        if root_ok != self._root_ok:
            if root_ok:
                log.info("%s is readable again", self.real_root)
            else:
                log.warning("cannot read the batch root %s", self.real_root)
            self._root_ok = root_ok
        return items

    def _count_seen(self, found: Found) -> None:
        """Count a file version (path, size, mtime) the first time a scan sees it."""
        if self._seen.get(found.rel) != found.signature:
            self._seen[found.rel] = found.signature
            metrics.FILES_SEEN.labels(NAME).inc()

    async def _handle(self, found: Found, stop: asyncio.Event, slots: asyncio.Semaphore) -> None:
        self._in_flight.add(found.rel)
        size = found.signature[0]
        try:
            await self._reading.acquire(size)
            try:
                await self._publish(found, stop)
            finally:
                await self._reading.release(size)
        except Stopped:
            self.tally.unfinished += 1  # not recorded: the next run publishes it
        finally:
            self._in_flight.discard(found.rel)
            slots.release()
            if self._progress is not None:
                self._progress.advance()

    async def _publish(self, found: Found, stop: asyncio.Event) -> None:
        assert self.checkpoint is not None
        limit = self.settings.kafka.max_message_bytes
        captured_at_ms = found.mtime_ns // 1_000_000
        try:
            data, digest = await asyncio.to_thread(self._read, found, limit)
        except FileRefused as exc:
            self._decided.pop(found.rel, None)  # watch: tried again later (RETRY_REFUSED_S)
            self._refuse_once(found.rel, exc.reason, exc.detail, found.signature)
            return
        except FileTooLarge as exc:
            oversized = ImageMessage(
                NAME, self.source_id, found.rel, b"", captured_at_ms, image_id=exc.image_id
            )
            detail = (
                f"file of {exc.size} bytes exceeds the topic limit of {limit} bytes "
                "(FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES)"
            )
            await self.publisher.reject(oversized, "too_large", detail, stop, size=exc.size)
            await self._rejected_to_dlq(found, exc.digest, exc.image_id, "too_large")
            return
        metrics.RECEIVED.labels(NAME).inc()
        self._refused.pop(found.rel, None)
        image_id = digest[:32]  # content_image_id: the one hash of the file, made off the loop
        recorded = self._recorded is None or found.rel in self._recorded
        if recorded and await self.checkpoint.touch_if_same(found.rel, found.signature, image_id):
            self._skip()  # touched, not changed
            return
        fmt = sniff_format(data)
        message = ImageMessage(
            source_type=NAME,
            source_id=self.source_id,
            origin=found.rel,
            data=data,
            captured_at_ms=captured_at_ms,
            content_type=f"image/{fmt}" if fmt else "application/octet-stream",
            image_id=image_id,
        )
        if data and fmt is None:
            detail = "no JPEG, PNG, GIF, BMP, TIFF or WebP signature in the first bytes"
            outcome = await self.publisher.reject(message, NOT_AN_IMAGE, detail, stop)
        else:
            outcome = await self.publisher.deliver(message, stop)
        if outcome.status == "published":
            await self.checkpoint.record(
                found.rel, found.signature, digest, outcome.image_id, "published"
            )
            self.tally.published += 1
            self.tally.published_bytes += len(data)
            metrics.PUBLISHED_BYTES.labels(NAME).inc(len(data))
        else:
            await self._rejected_to_dlq(found, digest, outcome.image_id, outcome.reason)

    def _read(self, found: Found, limit: int) -> tuple[bytes, str]:
        """(bytes, content digest) of ``found``, in a worker thread: read and hashed once."""
        data = read_file(found, self.real_root, limit, self.source_id)
        return data, content_digest(self.source_id, data)

    async def _rejected_to_dlq(self, found: Found, digest: str, image_id: str, reason: str) -> None:
        assert self.checkpoint is not None
        outcome = f"rejected:{reason}"
        await self.checkpoint.record(found.rel, found.signature, digest, image_id, outcome)
        self.tally.dead_lettered.add(reason)
        self._count_rejected(reason)

    def _skip(self) -> None:
        self.tally.skipped += 1
        metrics.FILES_SKIPPED.labels(NAME).inc()

    def _refuse(self, rel: str, reason: str, detail: str) -> None:
        log.warning("refused %s: %s: %s", rel, reason, detail)
        self._count_rejected(reason)

    def _refuse_once(
        self, rel: str, reason: str, detail: str, signature: tuple[int, int] | None
    ) -> None:
        """Report a refusal; in watch mode only when it is new for this file version."""
        if self.watch:
            entry = self._refused.get(rel)
            if entry is not None and entry[:2] == (reason, signature):
                self._refused[rel] = (reason, signature, entry[2])
                return
        self._refused[rel] = (reason, signature, time.monotonic())
        self._refuse(rel, reason, detail)

    def _count_rejected(self, reason: str) -> None:
        self.tally.rejected[reason] += 1
        metrics.FILES_REJECTED.labels(NAME, reason).inc()

    def _finish(self) -> None:
        self.summary = self.tally.line(time.monotonic() - self._began)
        log.info("batch run over %s: %s", self.real_root, self.summary)
        if self.watch:
            self.exit_code = EXIT_OK
        elif self.tally.unfinished:
            self.exit_code = EXIT_INCOMPLETE
        elif self.tally.rejected:
            self.exit_code = EXIT_REJECTED
        else:
            self.exit_code = EXIT_OK


async def _acquire_or_stop(slots: asyncio.Semaphore, stop: asyncio.Event) -> None:
    """Take a slot, or return without one as soon as ``stop`` is set."""
    if stop.is_set():
        return
    if not slots.locked():  # a slot is free: take it without a task to wait on
        await slots.acquire()
        return
    acquire = asyncio.ensure_future(slots.acquire())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not acquire.done():
        acquire.cancel()
    elif stop.is_set():
        slots.release()


async def _take_turn(index: int) -> None:
    """Hand the event loop a turn every PACE files of a scan."""
    if index and index % PACE == 0:
        await asyncio.sleep(0)
