"""benchmarks/compare.py end to end (short): real servers both ways, a report a person can act on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, child_env, needs_wrk


def run_compare(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``benchmarks/compare.py ARGS`` to completion, from the checkout."""
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=child_env(),
    )


def test_hydra_floor_reaches_its_task(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hydra_floor.py"), f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["task"]


@pytest.mark.serial
@needs_wrk
@pytest.mark.slow
def test_compare_reports_every_pair_start_up_against_the_floor_and_the_goals() -> None:
    done = run_compare("--duration=1", "--rounds=1", "--start-rounds=1", "--servers=uvicorn", timeout=240)
    assert done.returncode == 0, done.stderr
    report = done.stdout
    for loop in ("uvloop", "asyncio"):
        throughput = re.search(rf"^\| uvicorn \| {loop} \| ([\d,]+) \| ([\d,]+) \| ([\d.]+)x \(-\) \|", report, re.M)
        assert throughput, report
        assert all(float(value.replace(",", "")) > 0 for value in throughput.groups())
        start_row = rf"^\| uvicorn \| {loop} \| (\d+); (\d+) \| (\d+); (\d+) \| [+-]\d+ \| \d+ \| [+-]\d+ \|$"
        start = re.search(start_row, report, re.M)
        assert start, report
    floor = re.search(r"^Hydra's floor: .*, (\d+) ms \(median of (\d+)\)\.", report, re.M)
    assert floor and int(floor.group(1)) > 0 and int(floor.group(2)) == 4, report
    assert "`auto` resolves to granian/uvloop here; whether it is the fastest needs every server measured." in report
    assert re.search(r"^Default `python -m pyfly_hydra` .*: [\d.]+x\.$", report, re.M), report
    assert re.search(r"^Goals: (all met\.|NOT met: .+\.)$", report, re.M), report


def test_the_readme_throughput_table_is_the_pool_of_the_committed_rounds() -> None:
    rounds = sorted((ROOT / "docs" / "compare-2026-11-24").glob("*-rounds.txt"))
    done = run_compare("--pool", *map(str, rounds), timeout=60)
    assert done.returncode == 0, done.stderr
    readme = (ROOT / "README.md").read_text()
    pooled = re.findall(r"^\| (\w+)/(\w+) \| (\d+) \| ([\d.]+x) \| ([\d.-]+) \| (\d+) \|$", done.stdout, re.M)
    assert {(server, loop) for server, loop, *_ in pooled} == {
        (server, loop) for server in ("granian", "uvicorn", "hypercorn") for loop in ("uvloop", "asyncio")
    }
    for server, loop, count, median, middle_half, slower in pooled:
        assert f"| {server} | {loop} | {count} | {median} | {middle_half} | {slower} |" in readme
