"""Capacity under a p99 goal on real servers: the rate it reports is one the server serves within the goal,
and 1.3 times that rate is not (or the search said the client, not the server, was the limit). The follow-up
runs last as long as the search's steps: just above a server's capacity the queue, and so the p99, grows with
time, so a rate's verdict is a verdict for a run of that length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

SLO_MS = 100
STEP = 2
# Enough connections that they are not the limit: at the io preset's 10 ms, 256 carry about 25,000 requests/s.
CONNECTIONS = 256
# The server on one CPU, the load client on the other: on two shared CPUs, p99 is otherwise their tug of war.
# With the access log on (as in production) each server tops out at a few thousand requests/s, a rate the
# Python open-loop client sends without being late itself, so the knee measured is the server's.
SETUP = ("bench.server_cpus=0", "bench.client_cpus=1", "server.access_log=true")


def _bench(run_dir: Path, server: str, *overrides: str) -> dict:
    result = run_cli(
        "mode=bench", f"server={server}", "bench/workload=io", "bench.warmup=1", f"bench.connections={CONNECTIONS}",
        *SETUP, f"hydra.run.dir={run_dir}", *overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((run_dir / "bench.json").read_text())


@pytest.mark.serial
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_the_capacity_serves_within_the_goal_and_a_third_more_does_not(tmp_path: Path, server: str) -> None:
    found = _bench(
        tmp_path / "search", server, f"bench.slo_p99_ms={SLO_MS}", "bench.metric=capacity",
        f"bench.capacity.step_seconds={STEP}", "bench.capacity.budget_seconds=40",
    )  # fmt: skip
    search = found["capacity_search"]
    assert found["capacity"] > 0 and search["limit"] in ("slo", "client"), search
    rate = found["capacity"]
    at_rate = _bench(tmp_path / "at", server, f"bench.rate={rate}", f"bench.duration={STEP}")
    above = _bench(tmp_path / "above", server, f"bench.rate={round(1.3 * rate, 1)}", f"bench.duration={STEP}")
    figures = {
        "capacity": rate,
        "limit": search["limit"],
        "steps": [(step["rate"], step["p99_ms"], step["passed"]) for step in search["steps"]],
        **{name: (run["rps"], run["p99_ms"], run["errors"]) for name, run in (("at", at_rate), ("above", above))},
    }
    assert at_rate["errors"] == 0 and at_rate["p99_ms"] <= SLO_MS, figures
    if search["limit"] == "slo":
        assert above["p99_ms"] > SLO_MS or above["errors"] > 0 or above["rps"] < 0.95 * 1.3 * rate, figures
