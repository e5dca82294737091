"""The batch-directory bridge against the real Kafka broker, as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowforge.core.envelope import content_image_id
from flowforge.core.partitioning import partition_of
from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.support.bridges import BridgeProcess, bridge_env, checkpointed, read_records
from tests.support.images import Image, jpeg, png, scene
from tests.support.processes import start_flowforge
from tests.support.stack import stack_env
from tests.support.unique import unique_name
from tests.support.watch_churn import QUICK_WATCH, churn


@pytest.fixture
def env(request: pytest.FixtureRequest, services: Stack, tmp_path: Path) -> dict[str, str]:
    """A bridge environment with private topics and its own FLOWFORGE_HOME (checkpoints)."""
    return bridge_env(unique_name(request, "batch"), stack_env(), tmp_path)


@pytest.fixture
def watcher(env: dict[str, str], tmp_path: Path) -> Iterator[BridgeProcess]:
    """An (unstarted) `flowforge bridge batch ROOT --watch` on tmp_path/inbox; stopped after."""
    root = tmp_path / "inbox"
    root.mkdir()
    proc = BridgeProcess(["bridge", "batch", str(root), "--watch"], env, tmp_path)
    yield proc
    proc.stop()


def run_batch(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot `flowforge bridge batch ...` to its end; its output is captured."""
    return subprocess.run(
        [sys.executable, "-m", "flowforge", "bridge", "batch", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def summary(result: subprocess.CompletedProcess[str]) -> str:
    """The summary line a one-shot run prints on stdout."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("batch ")]
    assert len(lines) == 1, f"no summary line:\n{result.stdout}\n{result.stderr}"
    return lines[0]


def distinct(i: int, size: tuple[int, int] = (64, 48)) -> Image:
    """A small scene made distinct by black and white 8x8 blocks spelling ``i`` in binary
    (one seed: fast; blocks survive JPEG's quantisation)."""
    image = scene(*size, seed=0).copy()
    for bit in range(16):
        row, col = divmod(bit, size[0] // 8)
        image[row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] = 255 if i >> bit & 1 else 0
    return image


def make_images(root: Path, count: int) -> dict[str, bytes]:
    """``count`` distinct JPEGs and PNGs spread over nested directories; {relative path: bytes}."""
    files = {}
    for i in range(count):
        folder = ["", "day1/", "day1/cam-a/", "day2/"][i % 4]
        rel = f"{folder}img-{i:04d}.png" if i % 5 == 0 else f"{folder}img-{i:04d}.jpg"
        data = png(distinct(i)) if rel.endswith(".png") else jpeg(distinct(i))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        files[rel] = data
    assert len(set(files.values())) == count
    return files


def test_a_directory_is_published_once_then_only_what_changed(
    env: dict[str, str], tmp_path: Path
) -> None:
    """1,000 nested images give 1,000 records with key, bytes and envelope intact, the
    directory's one source spread over every partition by image id (none under half the even
    share); a re-run publishes 0 and says so; a modified file is published again, a touched one
    is not."""
    root = tmp_path / "photos"
    files = make_images(root, 1000)
    settings = Settings.from_env(env)
    first = run_batch(env, str(root))
    assert first.returncode == 0, first.stderr
    assert "published 1000, skipped 0 (already done), rejected 0" in summary(first)
    records = read_records(settings, [settings.kafka.topic_raw], len(files), settle=2)
    assert len(records) == len(files)
    partitions = range(settings.kafka.partitions)
    by_origin = {r.headers["ff-origin"]: r for r in records}
    assert set(by_origin) == set(files)
    for rel, data in files.items():
        record = by_origin[rel]
        assert record.key == "photos"
        assert record.value == data
        headers = record.headers
        assert headers["ff-image-id"] == content_image_id("photos", data)
        assert headers["ff-source-type"] == "batch"
        assert headers["ff-source-id"] == "photos"
        kind = "png" if rel.endswith(".png") else "jpeg"
        assert headers["ff-content-type"] == f"image/{kind}"
        assert int(headers["ff-captured-at"]) == (root / rel).stat().st_mtime_ns // 1_000_000
        assert record.partition == partition_of(headers["ff-image-id"], partitions)
    shares = Counter(r.partition for r in records)
    assert set(shares) == set(partitions), shares
    assert min(shares.values()) >= len(files) / len(partitions) / 2, shares

    second = run_batch(env, str(root))
    assert second.returncode == 0, second.stderr
    assert "published 0, skipped 1000 (already done), rejected 0" in summary(second)

    changed = jpeg(distinct(5000))
    (root / "day1/img-0001.jpg").write_bytes(changed)
    touched = root / "img-0004.jpg"
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    third = run_batch(env, str(root))
    assert third.returncode == 0, third.stderr
    assert "published 1, skipped 999 (already done)" in summary(third)
    records = read_records(settings, [settings.kafka.topic_raw], 1002, timeout=5)
    assert len(records) == 1001
    [new] = [r for r in records if r.value == changed]
    assert new.headers["ff-origin"] == "day1/img-0001.jpg"
    assert new.headers["ff-image-id"] == content_image_id("photos", changed)


def test_links_and_patterns_leading_outside_the_root_are_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Symlinks to a file and a directory outside the root are not followed and are reported
    (exit 1); a pattern with '..' is a usage error (exit 2) that publishes nothing."""
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = jpeg(distinct(1))
    (outside / "secret.jpg").write_bytes(secret)
    inside = jpeg(distinct(2))
    (root / "inside.jpg").write_bytes(inside)
    os.symlink(outside / "secret.jpg", root / "link.jpg")
    os.symlink("../outside", root / "dir-link")
    settings = Settings.from_env(env)

    for pattern in ("../outside/*.jpg", "sub/../../outside/*.jpg"):
        usage = run_batch(env, str(root), "--pattern", pattern)
        assert usage.returncode == 2
        assert "leads outside the root" in usage.stderr
        assert not usage.stdout

    result = run_batch(env, str(root))
    assert result.returncode == 1, result.stderr
    line = summary(result)
    assert "published 1, skipped 0 (already done), rejected 2 (outside_root 2)" in line
    assert "refused link.jpg: outside_root" in result.stderr
    assert "refused dir-link: outside_root" in result.stderr
    records = read_records(
        settings, [settings.kafka.topic_raw, settings.kafka.topic_dlq], 2, timeout=8
    )
    assert [(r.topic, r.value) for r in records] == [(settings.kafka.topic_raw, inside)]


def test_non_images_and_unreadable_files_are_reported_with_reasons(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A non-image goes to the DLQ (not_an_image, bytes kept), a dangling link is unreadable,
    a chmod-000 file is read or refused as this user really can; the run exits 1 and a re-run
    does not dead-letter the non-image twice."""
    root = tmp_path / "root"
    root.mkdir()
    good = jpeg(distinct(3))
    (root / "good.jpg").write_bytes(good)
    (root / "notes.jpg").write_bytes(b"this is a text file, not a JPEG\n")
    os.symlink("missing.jpg", root / "broken.jpg")
    locked = root / "locked.jpg"
    locked.write_bytes(jpeg(distinct(4)))
    locked.chmod(0)
    try:
        locked.read_bytes()
        readable = True  # root: permission bits do not stop it, so the bridge reads it too
    except PermissionError:
        readable = False
    settings = Settings.from_env(env)
    topics = [settings.kafka.topic_raw, settings.kafka.topic_dlq]

    result = run_batch(env, str(root))
    assert result.returncode == 1, result.stderr
    line = summary(result)
    unreadable = 1 if readable else 2
    assert f"published {2 if readable else 1}, skipped 0" in line
    assert f"not_an_image 1 [DLQ], unreadable {unreadable})" in line
    assert "refused broken.jpg: unreadable: broken symlink" in result.stderr
    if not readable:
        assert "refused locked.jpg: unreadable: Permission denied" in result.stderr
    records = read_records(settings, topics, 3, settle=2)
    [dead] = [r for r in records if r.topic == settings.kafka.topic_dlq]
    assert dead.value == b"this is a text file, not a JPEG\n"
    assert dead.headers["ff-error-reason"] == "not_an_image"
    assert dead.headers["ff-error-stage"] == "bridge"
    assert dead.headers["ff-origin"] == "notes.jpg"
    published = {r.value for r in records if r.topic == settings.kafka.topic_raw}
    assert good in published
    assert (locked.read_bytes() in published) == readable

    again = run_batch(env, str(root))
    assert again.returncode == 1
    assert f"published 0, skipped {3 if readable else 2} (already done)" in summary(again)
    assert f"rejected {unreadable} (unreadable {unreadable})" in summary(again)
    assert len(read_records(settings, topics, len(records) + 1, timeout=5)) == len(records)


def test_every_refused_image_file_is_one_rejected_record_with_its_dead_letters_id(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A non-image, an empty and an over-limit file each get exactly one `rejected`
    images.metadata record with its dead letter's image id, reason and the file's size; a
    dangling link (not an image we accepted) gets none and is only counted."""
    env = {**env, "FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES": "64KiB"}
    root = tmp_path / "root"
    root.mkdir()
    files = {
        "notes.jpg": b"this is a text file, not a JPEG\n",
        "empty.jpg": b"",
        "huge.png": png(distinct(5, (400, 300))) + bytes(100_000),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    os.symlink("missing.jpg", root / "broken.jpg")
    settings = Settings.from_env(env)
    topics = [settings.kafka.topic_metadata, settings.kafka.topic_dlq]

    result = run_batch(env, str(root))
    assert result.returncode == 1, result.stderr
    records = read_records(settings, topics, 6, settle=3)
    dead = {r.headers["ff-origin"]: r for r in records if r.topic == topics[1]}
    assert set(dead) == set(files)
    written = [json.loads(r.value) for r in records if r.topic == topics[0]]
    rows = {row["image_id"]: row for row in written}
    assert len(rows) == len(written) == len(files)
    for name, letter in dead.items():
        row = rows[letter.headers["ff-image-id"]]
        assert row["status"] == "rejected"
        assert row["reason"] == letter.headers["ff-error-reason"]
        assert row["bytes"] == len(files[name])
        assert row["source_type"] == "batch"
    assert {row["reason"] for row in rows.values()} == {"not_an_image", "empty", "too_large"}


def wait_for_metric(bridge: BridgeProcess, name: str, value: float, timeout: float) -> float:
    """Seconds until /metrics shows ``name`` >= ``value`` (fails after ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if bridge.metric(name) >= value:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{name} did not reach {value} in {timeout}s:\n{bridge.log()}")


def test_watch_publishes_a_new_file_once_within_2s(watcher: BridgeProcess) -> None:
    """In --watch mode a file added later is published within 2 s of its last change (its
    record's Kafka timestamp against its mtime), exactly once, and the bridge reports ready
    with its counts."""
    watcher.start()
    root = Path(watcher.command[2])
    data = jpeg(scene(1280, 720, seed=7))
    tmp = root / ".photo.jpg.part"  # hidden while written, as rsync and browsers do
    tmp.write_bytes(data)
    tmp.rename(root / "photo.jpg")
    os.utime(root / "photo.jpg", ns=(time.time_ns(), time.time_ns()))
    changed_ms = (root / "photo.jpg").stat().st_mtime_ns // 1_000_000
    wait_for_metric(watcher, "flowforge_bridge_published_total", 1, timeout=30)
    settings = watcher.settings
    records = read_records(settings, [settings.kafka.topic_raw], 1, settle=3)
    assert [(r.headers["ff-origin"], r.value) for r in records] == [("photo.jpg", data)]
    # The events' own times (the bridge's send, the file's change), not the test's polling.
    assert int(records[0].headers["ff-captured-at"]) == changed_ms
    assert 0 < records[0].timestamp_ms - changed_ms < 2000
    assert watcher.metric("flowforge_bridge_published_total") == 1
    assert watcher.metric("flowforge_bridge_files_seen_total") == 1
    assert watcher.metric("flowforge_bridge_published_bytes_total") == len(data)
    assert watcher.get("/readyz")[0] == 200
    assert watcher.signal(signal.SIGTERM) == 0


def test_watch_does_not_publish_a_half_written_file(watcher: BridgeProcess) -> None:
    """A file written slowly in place (pauses shorter than the settle time) is published once,
    whole, after the writer finished; never a partial copy."""
    watcher.start()
    root = Path(watcher.command[2])
    data = jpeg(scene(1280, 720, seed=8))
    chunks = [data[i : i + len(data) // 10 + 1] for i in range(0, len(data), len(data) // 10 + 1)]
    done = threading.Event()

    def write_slowly() -> None:
        with (root / "slow.jpg").open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                time.sleep(0.3)
        done.set()

    writer = threading.Thread(target=write_slowly)
    writer.start()
    while not done.is_set():
        assert watcher.metric("flowforge_bridge_published_total") == 0
        time.sleep(0.1)
    writer.join()
    wait_for_metric(watcher, "flowforge_bridge_published_total", 1, timeout=10)
    settings = watcher.settings
    records = read_records(
        settings, [settings.kafka.topic_raw, settings.kafka.topic_dlq], 1, settle=3
    )
    assert [(r.topic, r.value) for r in records] == [(settings.kafka.topic_raw, data)]


def test_sigkill_mid_run_then_rerun_publishes_every_file_and_no_acked_one_twice(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A one-shot run SIGKILLed midway, then run again: every file is published at least once,
    and the re-run publishes exactly the files the checkpoint did not hold."""
    root = tmp_path / "many"
    files = make_images(root, 300)
    slow = {**env, "FLOWFORGE_BATCH_CONCURRENCY": "1", "FLOWFORGE_BRIDGE_LINGER_MS": "40"}
    home = Path(env["FLOWFORGE_HOME"])
    proc = start_flowforge(["bridge", "batch", str(root)], env=slow, log=tmp_path / "batch.log")
    try:
        deadline = time.monotonic() + 60
        while checkpointed(home) < 30 and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = checkpointed(home)
    assert 30 <= done < len(files), "killed midway"

    rerun = run_batch(env, str(root))
    assert rerun.returncode == 0, rerun.stderr
    left = len(files) - done
    assert f"published {left}, skipped {done} (already done), rejected 0" in summary(rerun)
    settings = Settings.from_env(env)
    wanted = {content_image_id("many", data) for data in files.values()}
    records = read_records(
        settings, [settings.kafka.topic_raw], len(wanted), distinct=True, settle=2
    )
    ids = Counter(r.headers["ff-image-id"] for r in records)
    assert set(ids) == wanted
    duplicates = sum(ids.values()) - len(wanted)
    assert duplicates <= 1, "only the one unacknowledged file may be published twice"


def test_watch_of_16000_files_created_and_deleted_keeps_rss_flat_and_the_loop_responsive(
    env: dict[str, str], tmp_path: Path
) -> None:
    """16,000 small files created, published and deleted in 32 waves of 500 (a churning inbox):
    every one is published, the bridge's RSS grows less than 10 MiB after the first 8 waves
    (remembering the files that came and went grew it about 1 KiB a file, 12-13 MiB here), and
    its /livez, served by the event loop, always answers within 1 s."""
    root = tmp_path / "inbox"
    root.mkdir()
    bridge = BridgeProcess(
        ["bridge", "batch", str(root), "--watch"], {**env, **QUICK_WATCH}, tmp_path
    )
    bridge.start()
    try:
        seen = churn(bridge, root, files=16_000, wave=500)
        assert bridge.metric("flowforge_bridge_published_total") == 16_000
        print(
            f"RSS after each wave (MiB): {[round(r, 1) for r in seen.rss_mib]}; slowest /livez "
            f"{seen.slowest_livez_s * 1000:.0f} ms of {seen.livez_answers}; "
            f"{seen.files_per_s:.0f} files/s"
        )
        assert seen.growth_mib(warm_up=8) < 10, f"RSS grew: {seen.rss_mib}"
        assert seen.slowest_livez_s < 1.0
        assert bridge.signal(signal.SIGTERM) == 0
    finally:
        bridge.stop()
