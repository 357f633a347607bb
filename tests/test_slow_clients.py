"""The slow-client drill on every server: slowloris is cut off, normal requests keep being answered.

200 connections trickle a request head one byte every 0.5 s and 50 stall half way through a POST
body, for 4 s, while one client sends normal keep-alive requests. What each server does with a
stalled body is reported, not asserted: the manual's Reliability page (docs/reliability.md) has the figures.
"""

from __future__ import annotations

import pytest

from pyfly_hydra.bench.slow_clients import run_slow_client_drill
from tests.conftest import SERVERS

KEEP_ALIVE = 2
SLACK = 1.5


@pytest.mark.parametrize("server", SERVERS)
def test_slowloris_is_cut_off_and_normal_requests_are_answered(start_server, server: str) -> None:
    running = start_server(f"server={server}", f"server.keep_alive_timeout={KEEP_ALIVE}")
    result = run_slow_client_drill(running.port, slowloris=200, slow_posts=50, duration=4.0)
    report = (
        f"{server}: slowloris {result.slowloris.describe()}; slow POST {result.slow_post.describe()};"
        f" normal calm {result.baseline.describe()}; during {result.during.describe()}"
    )
    print(report)
    assert result.during.failed == 0 and result.during.answered >= 50, report
    assert result.slowloris.closed == result.slowloris.opened, report
    assert result.slowloris.max_seconds is not None and result.slowloris.max_seconds <= KEEP_ALIVE + SLACK, report
    assert running.stop() == 0, running.log()
