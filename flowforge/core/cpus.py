"""The CPUs this process may use: its affinity capped by a cgroup CPU quota (containers)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _affinity() -> int:
    """CPUs the scheduler lets this process run on (all of the host's without affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _cgroup_paths(proc_self_cgroup: Path) -> dict[str, str]:
    """``{controller: path}`` from /proc/self/cgroup; cgroup v2's single line is under ``""``."""
    paths: dict[str, str] = {}
    try:
        text = proc_self_cgroup.read_text(encoding="utf-8")
    except OSError:
        return paths
    for line in text.splitlines():
        _, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not sep or not sep2:
            continue
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _dirs(base: Path, path: str) -> Iterator[Path]:
    """``base/path`` and each of its parents up to ``base``; ``base`` alone when the path is
    not visible (a container sees its own cgroup at the mount's root)."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for depth in range(len(parts), -1, -1):
        yield base.joinpath(*parts[:depth])


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _v2_limit(root: Path, path: str) -> float | None:
    """The smallest ``cpu.max`` quota/period on the way from this cgroup to the root (v2)."""
    limits = []
    for directory in _dirs(root, path):
        text = _read(directory / "cpu.max")
        if not text:
            continue
        quota, _, period = text.partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            limits.append(int(quota) / int(period))
    return min(limits, default=None)


def _v1_limit(root: Path, controllers: str, path: str) -> float | None:
    """The smallest ``cpu.cfs_quota_us / cpu.cfs_period_us`` above this cgroup (v1; a quota
    of -1 means none)."""
    limits = []
    for mount in dict.fromkeys((controllers, "cpu,cpuacct", "cpuacct,cpu", "cpu")):
        for directory in _dirs(root / mount, path):
            quota = _read(directory / "cpu.cfs_quota_us")
            period = _read(directory / "cpu.cfs_period_us")
            if quota and period and quota.isdigit() and period.isdigit() and int(period) > 0:
                limits.append(int(quota) / int(period))
    return min(limits, default=None)


def available_cpus(
    root: Path = CGROUP_ROOT,
    *,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
    affinity: Callable[[], int] = _affinity,
) -> int:
    """How many CPUs this process can keep busy, never below 1.

    ``os.cpu_count()`` is the host's count: inside ``cpus: 2`` on a 32-core host it says 32.
    This takes the CPUs of the process's affinity (``os.sched_getaffinity``, what
    ``docker --cpuset-cpus`` sets) and caps them by the cgroup CPU quota, rounded up: cgroup
    v2's ``cpu.max`` (``"200000 100000"`` = 2 CPUs, ``"max ..."`` = none) or v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 = none), the smallest on the path
    from this process's cgroup (``/proc/self/cgroup``) up to the root, so a quota set on a
    parent (a systemd slice natively, the container's cgroup under Docker) counts too.
    """
    cpus = max(1, affinity())
    paths = _cgroup_paths(proc_self_cgroup)
    limits = []
    if "" in paths:
        limits.append(_v2_limit(root, paths[""]))
        limits.append(_v2_limit(root / "unified", paths[""]))  # hybrid hierarchy
    v1 = _v1_controllers(proc_self_cgroup)
    if v1:
        limits.append(_v1_limit(root, v1[0], paths.get("cpu", "/")))
    elif not paths:  # /proc unreadable: look at the mount's root alone
        limits.append(_v2_limit(root, "/"))
        limits.append(_v1_limit(root, "cpu", "/"))
    quota = min((limit for limit in limits if limit is not None), default=None)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def _v1_controllers(proc_self_cgroup: Path) -> list[str]:
    """The v1 hierarchies' controller lists (``cpu,cpuacct``), as their mount directories are
    named."""
    try:
        text = proc_self_cgroup.read_text(encoding="utf-8")
    except OSError:
        return []
    result = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1]:
            controllers = parts[1].split(",")
            if "cpu" in controllers:
                result.append(parts[1])
    return result
