"""benchmarks/compare.py end to end (short): real servers both ways, a report a person can act on; its
verdict on the goals on figures given (met, not met), and checked against the figures of the real run."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT, child_env, needs_wrk


def load_compare() -> ModuleType:
    """benchmarks/compare.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("compare", ROOT / "benchmarks" / "compare.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("compare", module)  # its dataclasses look their module up while being defined
    spec.loader.exec_module(sys.modules["compare"])
    return sys.modules["compare"]


def assert_goals_follow_from_the_figures(report: str) -> None:
    """The Goals line says NOT met for exactly the printed figures past their goal. A figure printed on the
    goal itself is rounded either way and decides nothing."""
    compare = load_compare()
    beyond: dict[str, bool] = {}  # the start of a failure line: whether the figure is past its goal

    def judge(prefix: str, printed: str, goal: float, worse: Callable[[float, float], bool], places: int) -> None:
        if float(printed) != round(goal, places):
            beyond[prefix] = worse(float(printed), goal)

    throughput_row = (
        r"^\| (\w+) \| (\w+) \| [\d,]+ \| [\d,]+ \| ([\d.]+)x \([^)]*\) \| [\d.]+ \| [\d.]+ \| ([\d.]+)x \|$"
    )
    for server, loop, rps_ratio, p99_ratio in re.findall(throughput_row, report, re.M):
        judge(f"{server}/{loop} throughput", rps_ratio, compare.MIN_RPS_RATIO, float.__lt__, 2)
        judge(f"{server}/{loop} p99", p99_ratio, compare.MAX_P99_RATIO, float.__gt__, 2)
    start_row = r"^\| (\w+) \| (\w+) \| \d+; \d+ \| \d+; \d+ \| [+-]\d+ \| \d+ \| ([+-]\d+) \|$"
    for server, loop, share in re.findall(start_row, report, re.M):
        judge(f"{server}/{loop} pyfly-hydra's share of start-up", share, compare.MAX_OWN_START_MS, float.__gt__, 0)
    default = re.search(r"^Default `python -m pyfly_hydra` .*: ([\d.]+)x\.$", report, re.M)
    assert default, report
    judge("default", default.group(1), compare.MIN_DEFAULT_RATIO, float.__lt__, 2)
    assert len(beyond) >= 2, report  # the rows were read
    goals = re.search(r"^Goals: (all met|NOT met: (.+))\.$", report, re.M)
    assert goals, report
    failures = goals.group(2).split("; ") if goals.group(2) else []
    for prefix, past in beyond.items():
        named = [failure for failure in failures if failure.startswith(prefix + " ")]
        assert bool(named) == past, (prefix, past, goals.group(0))


def synthetic_report(capsys: pytest.CaptureFixture[str], *, rps: float, p99_ms: float, start_ms: float) -> str:
    """compare.py's report on figures given here: the runner's rps, p99 and start-up against a raw server's
    10,000 rps, 1 ms and 250 ms (Hydra's floor 60 ms), and its default at ``rps`` against uvicorn's 10,000."""
    compare = load_compare()

    def run(rps: float, p99_ms: float, start_ms: float) -> object:
        load = compare.LoadResult("wrk", int(rps), 0, 1.0, rps, p99_ms / 2, p99_ms * 0.8, p99_ms, 0.1, 1)
        return compare.Run(start_ms, load)

    def pair(label: str) -> object:
        return compare.Pair(label, [(run(rps, p99_ms, start_ms), run(10_000, 1.0, 250))], [60.0])

    pairs = [("uvicorn", loop, pair(f"uvicorn/{loop}")) for loop in ("uvloop", "asyncio")]
    capsys.readouterr()
    compare.report(pairs, pair("default"), argparse.Namespace(duration=1, rounds=1), [0, 1])
    return capsys.readouterr().out


def test_goals_met_when_the_runner_matches_the_raw_server(capsys: pytest.CaptureFixture[str]) -> None:
    """Throughput 1.5x, p99 1.0x, 40 ms over the raw server's start-up (under Hydra's 60 ms floor), default 1.5x."""
    report = synthetic_report(capsys, rps=15_000, p99_ms=1.0, start_ms=290)
    assert re.search(r"^Goals: all met\.$", report, re.M), report
    assert_goals_follow_from_the_figures(report)


def test_goals_not_met_names_every_figure_past_its_goal(capsys: pytest.CaptureFixture[str]) -> None:
    """Throughput 0.5x, p99 3x, start-up 190 ms beyond Hydra's floor, default 0.5x: each named, both loops."""
    report = synthetic_report(capsys, rps=5_000, p99_ms=3.0, start_ms=500)
    goals = re.search(r"^Goals: NOT met: (.+)\.$", report, re.M)
    assert goals, report
    assert goals.group(1).split("; ") == [
        "uvicorn/uvloop throughput 0.50x < 0.97x",
        "uvicorn/uvloop p99 3.00x > 1.1x",
        "uvicorn/asyncio throughput 0.50x < 0.97x",
        "uvicorn/asyncio p99 3.00x > 1.1x",
        "uvicorn/uvloop pyfly-hydra's share of start-up +190 ms > 50 ms",
        "uvicorn/asyncio pyfly-hydra's share of start-up +190 ms > 50 ms",
        "default 0.50x < 1.2x uvicorn's defaults",
    ]
    assert_goals_follow_from_the_figures(report)


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
    assert_goals_follow_from_the_figures(report)


def test_the_manuals_throughput_table_is_the_pool_of_the_committed_rounds() -> None:
    rounds = sorted((ROOT / "docs" / "compare-2026-11-24").glob("*-rounds.txt"))
    done = run_compare("--pool", *map(str, rounds), timeout=60)
    assert done.returncode == 0, done.stderr
    performance = (ROOT / "docs" / "performance.md").read_text()
    pooled = re.findall(r"^\| (\w+)/(\w+) \| (\d+) \| ([\d.]+x) \| ([\d.-]+) \| (\d+) \|$", done.stdout, re.M)
    assert {(server, loop) for server, loop, *_ in pooled} == {
        (server, loop) for server in ("granian", "uvicorn", "hypercorn") for loop in ("uvloop", "asyncio")
    }
    for server, loop, count, median, middle_half, slower in pooled:
        assert f"| {server} | {loop} | {count} | {median} | {middle_half} | {slower} |" in performance


def test_a_verdict_that_does_not_follow_from_the_figures_is_caught(capsys: pytest.CaptureFixture[str]) -> None:
    """The check the end-to-end run relies on fails on a wrong Goals line, either way."""
    not_met = synthetic_report(capsys, rps=5_000, p99_ms=3.0, start_ms=500)
    met = synthetic_report(capsys, rps=15_000, p99_ms=1.0, start_ms=290)
    for report, wrong in ((not_met, "Goals: all met."), (met, "Goals: NOT met: uvicorn/uvloop p99 1.00x > 1.1x.")):
        doctored = re.sub(r"^Goals: .*$", wrong, report, flags=re.M)
        with pytest.raises(AssertionError):
            assert_goals_follow_from_the_figures(doctored)


def test_layer_cost_measures_every_layer_against_its_own_baseline() -> None:
    """benchmarks/layer_cost.py, short: a row per in-worker layer, each with a figure (the docs quote a full run)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "layer_cost.py"), "--requests", "300", "--rounds", "2"],
        capture_output=True, text=True, timeout=120, env=child_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\| (.+?) \| (.+?) \| ([+-]\d+\.\d\d) \|", result.stdout, flags=re.M)
    layers = {row[0] for row in rows}
    assert {"GoingAway (websockets closed with 1001)", "HTTPExchange, + metrics (server.metrics)"} <= layers
    assert len(rows) == 11, result.stdout


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_tuner_vs_grid_reports_each_seeds_pick_against_the_grids_truth(tmp_path: Path) -> None:
    """benchmarks/tuner_vs_grid.py, short (uvicorn and hypercorn, 8 configurations x 3 rounds): the grid ranked, then
    per seed the tuner's pick, its ratio to the grid's best and the jobs spent, within a third of the grid's."""
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "tuner_vs_grid.py"), "--servers", "uvicorn,hypercorn",
            "--seeds", "1", "--duration", "1", "--warmup", "0", "--workload", "plaintext", "--contenders", "1",
            "--confirm-rounds", "2", "--out", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=380, cwd=ROOT, env=child_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    row = r"^\| (\d+) \| ((?:uvicorn|hypercorn) \S+ w[12]) \| ([\d,]+) \| ([\d.]+) \| (\w+) \|$"
    grid = re.findall(row, result.stdout, re.M)
    assert sorted(int(row[0]) for row in grid) == list(range(1, 9)), result.stdout
    assert len({row[1] for row in grid}) == 8
    [seed] = re.findall(
        r"^\| 1 \| (\S+ \S+ w[12]) \| (\d+) \| ([\d.]+) \| (\w+) \| (\d+) of 24 \| (yes|no) \|", result.stdout, re.M
    )
    assert 1 <= int(seed[1]) <= 2 and 0 < float(seed[2]) <= 1.0
    assert int(seed[4]) <= 24 // 3  # at most a third of the grid's jobs
    assert seed[5] == ("yes" if float(seed[2]) >= 0.95 or seed[3] in ("best", "winner", "tie") else "no")
    assert (tmp_path / "grid" / "summary.md").is_file() and (tmp_path / "tune-1" / "trials.csv").is_file()
