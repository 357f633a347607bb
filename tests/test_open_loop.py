"""Open loop (``bench.rate``) measures what a user waits for; closed loop hides a server's stall.

The app freezes once for STALL seconds during a DURATION-second run. Open loop at RATE requests/s: the sends
intended during the stall wait in the client, and their latencies, counted from their intended send times, spread
evenly over 0..STALL. So the share of requests slower than x is (STALL - x) / DURATION, which puts the p99 at
STALL - 0.01 * DURATION and the p90 at STALL - 0.10 * DURATION, and about RATE * STALL sends leave late. Closed
loop on the same app: only the one request in flight per connection waits out the stall (CONNECTIONS of many
thousands), so its p99 stays at milliseconds and only the maximum shows the stall.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import child_env, run_cli

STALL, DURATION, RATE, CONNECTIONS = 1.0, 5, 400, 16


def _bench(tmp_path: Path, name: str, *overrides: str) -> dict:
    run_dir = tmp_path / name
    result = run_cli(
        "mode=bench", "server=uvicorn", "app=stall_app:app", "bench.client=builtin", "bench.warmup=0",
        f"bench.duration={DURATION}", f"bench.connections={CONNECTIONS}", f"hydra.run.dir={run_dir}", *overrides,
        env=child_env(STALL_AFTER="2.5", STALL_SECONDS=str(STALL)),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((run_dir / "bench.json").read_text())


@pytest.mark.serial
def test_open_loop_counts_the_stall_that_closed_loop_hides(tmp_path: Path) -> None:
    opened = _bench(tmp_path, "open", f"bench.rate={RATE}")
    closed = _bench(tmp_path, "closed")
    figures = {
        name: {key: record[key] for key in ("requests", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "late_sends")}
        for name, record in (("open", opened), ("closed", closed))
    }
    stall_ms = STALL * 1000
    theory_p99, theory_p90 = stall_ms - 0.01 * DURATION * 1000, stall_ms - 0.10 * DURATION * 1000  # 950, 500 ms
    assert opened["errors"] == closed["errors"] == 0, figures
    assert opened["rate"] == RATE and abs(opened["rps"] - RATE) / RATE < 0.05, figures
    assert abs(opened["p99_ms"] - theory_p99) < 60, (theory_p99, figures)
    assert abs(opened["p90_ms"] - theory_p90) < 100, (theory_p90, figures)
    assert stall_ms * 0.95 < opened["max_ms"] < stall_ms + 150, figures
    assert abs(opened["late_sends"] - RATE * STALL) < 0.2 * RATE * STALL, figures
    # Closed loop: the same stall, at its maximum only; the p99 is ordinary.
    assert closed["max_ms"] > stall_ms * 0.95, figures
    assert closed["p99_ms"] < 100 and closed["requests"] > 100 * CONNECTIONS, figures
    assert closed["rate"] is None and closed["late_sends"] is None, figures
