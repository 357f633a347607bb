"""server.workers=0 counts the CPUs a container may use: affinity capped by the cgroup CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

from pyfly_hydra.system.cpus import cgroup_cpu_limit, usable_cpus


def cgroup_v2(tmp_path: Path, cpu_max: str, own: str = "/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    directory = root / own.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (directory / "cpu.max").write_text(cpu_max + "\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"0::{own}\n")
    return root, proc


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    root, proc = cgroup_v2(tmp_path, "150000 100000", own="/system.slice/app.service")
    assert cgroup_cpu_limit(root, proc) == 1.5
    assert usable_cpus(root, proc) == min(len(os.sched_getaffinity(0)), 2)


def test_cgroup_v2_without_quota(tmp_path: Path) -> None:
    root, proc = cgroup_v2(tmp_path, "max 100000")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    cpu = tmp_path / "cgroup" / "cpu,cpuacct"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("50000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "cgroup", tmp_path / "none") == 0.5
    assert usable_cpus(tmp_path / "cgroup", tmp_path / "none") == 1


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    cpu = tmp_path / "cgroup" / "cpu"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "cgroup", tmp_path / "none") is None


def test_this_machine() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
