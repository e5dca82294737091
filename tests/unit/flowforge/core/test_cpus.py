"""available_cpus(): the process's CPUs capped by a cgroup quota, read from a fake cgroup tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowforge.core.cpus import available_cpus


def _tree(tmp_path: Path, files: dict[str, str], proc: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    root.mkdir(exist_ok=True)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc, encoding="utf-8")
    return root, proc_file


def _cpus(root: Path, proc: Path, host: int = 32) -> int:
    return available_cpus(root, proc_self_cgroup=proc, affinity=lambda: host)


def test_v2_quota_in_a_container_caps_the_host_cpus(tmp_path: Path) -> None:
    """cgroup v2 `cpu.max` "200000 100000" (compose `cpus: 2`) on a 32-CPU host gives 2."""
    root, proc = _tree(tmp_path, {"cpu.max": "200000 100000"}, "0::/\n")
    assert _cpus(root, proc) == 2


def test_v2_fractional_quota_rounds_up(tmp_path: Path) -> None:
    """A quota of 1.5 CPUs gives 2 threads (rounded up), and 0.5 CPU gives 1, never 0."""
    root, proc = _tree(tmp_path, {"cpu.max": "150000 100000"}, "0::/\n")
    assert _cpus(root, proc) == 2
    root, proc = _tree(tmp_path / "half", {"cpu.max": "50000 100000"}, "0::/\n")
    assert _cpus(root, proc) == 1


def test_v2_without_a_quota_uses_the_affinity(tmp_path: Path) -> None:
    """`cpu.max` "max 100000" (no quota) leaves the CPUs the process may run on."""
    root, proc = _tree(tmp_path, {"cpu.max": "max 100000"}, "0::/\n")
    assert _cpus(root, proc, host=6) == 6


def test_v2_quota_on_a_parent_cgroup_counts(tmp_path: Path) -> None:
    """Natively the process sits in a nested cgroup (/proc/self/cgroup names it); a quota on
    its parent slice caps it, and the smallest quota on the way up wins."""
    files = {
        "flowforge.slice/cpu.max": "300000 100000",
        "flowforge.slice/worker.service/cpu.max": "max 100000",
        "cpu.max": "800000 100000",
    }
    root, proc = _tree(tmp_path, files, "0::/flowforge.slice/worker.service\n")
    assert _cpus(root, proc) == 3


def test_v2_path_not_visible_in_the_container_falls_back_to_the_mount_root(
    tmp_path: Path,
) -> None:
    """When /proc/self/cgroup names a host path the container cannot see, the quota of the
    cgroup mounted at the root (the container's own) applies."""
    root, proc = _tree(tmp_path, {"cpu.max": "100000 100000"}, "0::/docker/abc123\n")
    assert _cpus(root, proc) == 1


def test_v1_cfs_quota_caps_the_cpus(tmp_path: Path) -> None:
    """cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` = 200000 / 100000 gives 2."""
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "200000",
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
    }
    proc = "12:memory:/\n4:cpu,cpuacct:/\n1:name=systemd:/\n"
    root, proc_file = _tree(tmp_path, files, proc)
    assert _cpus(root, proc_file) == 2


def test_v1_quota_minus_one_means_no_limit(tmp_path: Path) -> None:
    """A v1 quota of -1 is no quota: the affinity stands."""
    files = {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}
    root, proc = _tree(tmp_path, files, "3:cpu:/\n2:cpuacct:/\n")
    assert _cpus(root, proc, host=4) == 4


def test_affinity_below_the_quota_wins(tmp_path: Path) -> None:
    """A cpuset of 2 CPUs under a quota of 8 gives 2: the smaller of the two."""
    root, proc = _tree(tmp_path, {"cpu.max": "800000 100000"}, "0::/\n")
    assert _cpus(root, proc, host=2) == 2


@pytest.mark.parametrize("text", ["", "garbage", "max", "100000 0", "-5 100000"])
def test_unreadable_or_odd_files_are_ignored(tmp_path: Path, text: str) -> None:
    """An empty, malformed or zero-period `cpu.max` is ignored rather than failing the start."""
    root, proc = _tree(tmp_path, {"cpu.max": text}, "0::/\n")
    assert _cpus(root, proc, host=3) == 3


def test_no_cgroup_files_at_all(tmp_path: Path) -> None:
    """Without cgroup files or /proc/self/cgroup, the affinity is the answer, at least 1."""
    assert available_cpus(tmp_path / "none", proc_self_cgroup=tmp_path / "nope",
                          affinity=lambda: 5) == 5  # fmt: skip
    assert available_cpus(tmp_path / "none", proc_self_cgroup=tmp_path / "nope",
                          affinity=lambda: 0) == 1  # fmt: skip


def test_defaults_read_this_machine() -> None:
    """With the real /sys/fs/cgroup and affinity, the answer is between 1 and the affinity."""
    import os

    cpus = available_cpus()
    assert 1 <= cpus <= len(os.sched_getaffinity(0))
