"""The soak's descriptor accounting: per-thread /proc stat files counted apart, and their bound."""

from __future__ import annotations

import mmap
import os
import threading

import psutil

from bench.load import process_sample, thread_stat_fds
from bench.soak import unbounded


def test_thread_stat_fds_counts_only_this_process_per_thread_proc_files() -> None:
    """Opening a thread's /proc stat, schedstat and io files adds three to the count and to
    nothing else; an ordinary /proc file (not per-thread) is not counted."""
    pid = os.getpid()
    before = thread_stat_fds(pid)
    tid = threading.get_native_id()
    files = [open(f"/proc/{pid}/task/{tid}/{n}", "rb") for n in ("stat", "schedstat", "io")]  # noqa: SIM115
    other = open(f"/proc/{pid}/status", "rb")  # noqa: SIM115
    try:
        assert thread_stat_fds(pid) == before + 3
        sample = process_sample(psutil.Process(pid))
        assert sample["thread_stat_fds"] == before + 3
        assert sample["fds"] == psutil.Process(pid).num_fds() - (before + 3)
    finally:
        for f in [*files, other]:
            f.close()
    assert thread_stat_fds(pid) == before


def test_process_sample_counts_an_allocation_in_the_anonymous_part_of_rss() -> None:
    """Touching 64 MiB of freshly mapped memory raises ``rss_anon_mb`` by about that much;
    the anonymous part never exceeds the whole RSS."""
    proc = psutil.Process(os.getpid())
    before = process_sample(proc)
    # A fresh anonymous mapping, each page written: the heap's freed but resident memory (after
    # the integration tests, in the same process) cannot hand back pages already counted.
    block = mmap.mmap(-1, 64 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        block.write(b"\1" * (64 * 2**20))
        after = process_sample(proc)
    finally:
        block.close()
    assert after["rss_anon_mb"] - before["rss_anon_mb"] >= 60
    assert 0 < after["rss_anon_mb"] <= after["rss_mb"]


def _row(threads: float, stat_fds: float) -> dict[str, float]:
    row = {"t": 0.0}
    for proc in ("bridge", "worker", "sink"):
        row[f"{proc}_threads"] = 4.0
        row[f"{proc}_thread_stat_fds"] = 0.0
    row["sink_threads"] = threads
    row["sink_thread_stat_fds"] = stat_fds
    return row


def test_unbounded_flags_more_than_three_per_thread_stat_files_per_thread() -> None:
    """Up to three per-thread /proc descriptors per thread is the engine's bound; one more in
    any sample is reported, naming the process."""
    assert unbounded([_row(150, 300), _row(150, 450)]) == []
    [message] = unbounded([_row(150, 300), _row(150, 451)])
    assert message.startswith("sink: 1 ")
