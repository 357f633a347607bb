"""Capacity under a p99 goal on real servers: the rate it reports met the goal in a follow-up run (the search's
confirming run, twice as long as a step, on the same server a moment later), and 1.3 times that rate did not
(the step the search runs beyond its result), unless the search said the load client was the limit. Both run
in the job itself: separate jobs minutes apart on this shared machine measured the same server at 4,000 and
10,000 requests/s, so a follow-up in another process would test the machine's drift, not the search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyfly_hydra.bench.capacity import ACHIEVED_SHARE
from tests.conftest import run_cli

SLO_MS = 100
STEP = 2
# Enough connections that they are not the limit: at the io preset's 10 ms, 256 carry about 25,000 requests/s.
CONNECTIONS = 256
# The server on one CPU, the load client on the other: on two shared CPUs, p99 is otherwise their tug of war.
# With the access log on (as in production) each server tops out at a few thousand requests/s, a rate the
# Python open-loop client sends without being late itself, so the knee measured is the server's.
SETUP = ("bench.server_cpus=0", "bench.client_cpus=1", "server.access_log=true")
UNTRUSTED = ("budget", "unsteady")
BUDGET = 60  # seconds of search steps
# The job takes longer than its step budget: server start, warm-up, the closed-loop probe, a pause per step,
# the confirming run and the step beyond come on top (one CI run took over 60 s in all).
JOB_TIMEOUT = 2 * BUDGET


def _bench(run_dir: Path, server: str, *overrides: str) -> dict:
    result = run_cli(
        "mode=bench", f"server={server}", "bench/workload=io", "bench.warmup=1", f"bench.connections={CONNECTIONS}",
        *SETUP, f"hydra.run.dir={run_dir}", *overrides, timeout=JOB_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((run_dir / "bench.json").read_text())


@pytest.mark.serial
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_the_capacity_serves_within_the_goal_and_a_third_more_does_not(tmp_path: Path, server: str) -> None:
    for attempt in (1, 2):
        found = _bench(
            tmp_path / f"search-{attempt}", server, f"bench.slo_p99_ms={SLO_MS}", "bench.metric=capacity",
            f"bench.capacity.step_seconds={STEP}", f"bench.capacity.budget_seconds={BUDGET}",
        )  # fmt: skip
        # The search says itself when this machine's noise left it nothing to trust (a rate never passed twice,
        # or 1.3 times the result passed too): measured again, as a user would. CI met each once in a day.
        if found["capacity_search"]["limit"] not in UNTRUSTED:
            break
    search = found["capacity_search"]
    if search["limit"] in UNTRUSTED:
        # Twice in a row (CI46: the same rate at 27 ms and 185 ms p99 seconds apart, in both searches): the machine
        # is too noisy now for a knee to exist. What is checked then is the search's honesty about it: every step
        # judged by the goal, and the verdict that says the figure is not to be trusted.
        for step in search["steps"]:
            met = step["p99_ms"] <= SLO_MS and step["errors"] == 0 and step["rps"] >= ACHIEVED_SHARE * step["rate"]
            assert step["passed"] == met, step
        assert found["capacity"] > 0, found
        return
    confirmed, beyond = search["steps"][-1], search["beyond"]
    figures = {
        "capacity": found["capacity"],
        "limit": search["limit"],
        "steps": [(step["rate"], step["p99_ms"], step["passed"]) for step in search["steps"]],
        "beyond": beyond,
    }
    assert found["capacity"] > 0 and search["limit"] in ("slo", "client"), figures
    if search["limit"] == "client":  # the search's own word, checked: a rate failed with the load client saturated
        assert any(step["client_saturated"] for step in search["steps"] if not step["passed"]), search["steps"]
    # The follow-up at the reported rate (two steps long, the same server a moment later) met the goal...
    assert confirmed["rate"] == pytest.approx(search["rate"], abs=0.1) and confirmed["passed"], figures
    assert found["rate"] == pytest.approx(search["rate"], abs=0.1) and found["p99_ms"] <= SLO_MS, figures
    assert found["errors"] == 0, figures
    # ...and one at 1.3 times it did not, unless the load client was the limit.
    assert beyond["rate"] == pytest.approx(1.3 * search["rate"], rel=1e-3), figures
    if search["limit"] == "slo":
        assert not beyond["passed"], figures
