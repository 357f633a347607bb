"""How many CPUs this process may really use: its affinity, capped by a container's CPU quota.

``server.workers=0`` starts one worker per usable CPU. ``os.cpu_count()`` is the host's count, and
even the affinity mask ignores a cgroup CPU quota (``docker run --cpus=2`` on a 64-core host):
sixty-four workers sharing two CPUs' worth of time. The quota is read from cgroup v2's ``cpu.max``
or cgroup v1's ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, and rounded up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_limit(root: Path, own_path: str) -> float | None:
    for directory in (root / own_path.lstrip("/"), root):
        text = _read(directory / "cpu.max")
        if text is None:
            continue
        quota, _, period = text.partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    return None


def _v1_limit(root: Path) -> float | None:
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota, period = _read(root / name / "cpu.cfs_quota_us"), _read(root / name / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        if int(quota) <= 0 or int(period) <= 0:
            return None
        return int(quota) / int(period)
    return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none."""
    own_path = "/"
    for line in (_read(proc_cgroup) or "").splitlines():
        if line.startswith("0::"):
            own_path = line[3:] or "/"
    try:
        limit = _v2_limit(root, own_path) if (root / "cgroup.controllers").exists() else _v1_limit(root)
    except ValueError:
        return None
    return limit


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs this process may run on (affinity), capped by its cgroup's CPU quota, rounded up."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return count
