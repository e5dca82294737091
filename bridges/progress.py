"""Progress of a one-shot batch run: a tqdm bar on a terminal, a plain log line otherwise."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)

# Without a terminal, one line at most this often (and one at the end).
LINE_EVERY_S = 10.0


class Progress:
    """Count, rate and ETA of ``total`` files: a bar on ``stream`` when it is a terminal (log
    lines printed above it), else an info line every LINE_EVERY_S seconds."""

    def __init__(self, total: int, stream: TextIO, *, what: str = "files") -> None:
        self.total = total
        self.done = 0
        self.what = what
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: tqdm[Any] | None = None
        self._redirect = contextlib.ExitStack()
        if total and stream.isatty():
            self._redirect.enter_context(logging_redirect_tqdm())
            self._bar = tqdm(total=total, unit=" " + what, file=stream, dynamic_ncols=True)

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more files as handled."""
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last_line >= LINE_EVERY_S:
            self._last_line = now
            log.info("progress: %s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``done/total files, rate/s, ETA``."""
        elapsed = max((now or time.monotonic()) - self._started, 1e-9)
        rate = self.done / elapsed
        left = self.total - self.done
        eta = f", ETA {left / rate:.0f}s" if rate > 0 and left else ""
        return f"{self.done}/{self.total} {self.what}, {rate:.1f} {self.what}/s{eta}"

    def close(self) -> None:
        """Finish the bar (or nothing without a terminal) and stop redirecting log lines."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._redirect.close()
