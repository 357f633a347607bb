"""The open loop's bookkeeping in-process, on a clock the test sets: which sends count late (more than 2 ms after
their intended time), which unsent sends count as errors (still unsent 2 s after the run), and how close the HDR
histogram's percentiles are to the latencies recorded (within 0.1%). Each check sits on both sides of its figure,
so another threshold, deadline or precision fails it."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from contextlib import suppress

import pytest

from pyfly_hydra.bench.clients import open_loop
from pyfly_hydra.bench.clients.base import LoadSpec
from pyfly_hydra.bench.clients.builtin import BuiltinClient
from pyfly_hydra.bench.clients.http1 import Target
from pyfly_hydra.bench.clients.open_loop import OpenLoopRun

RATE = 8  # sends/s on one connection: every 0.125 s, exact in binary, so the schedule has no rounding
INTERVAL = 1 / RATE
SERVICE = 0.0005  # seconds: what each answer takes on the test's clock
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Clock:
    """``time`` as the open loop sees it: ``perf_counter`` returns what the test set."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def run_scripted(
    monkeypatch: pytest.MonkeyPatch, sends: int, leaves_at: Callable[[float, float], float]
) -> tuple[OpenLoopRun, list[float]]:
    """One connection's open loop over ``sends`` intended sends against a local server; the k-th send is
    found leaving at ``leaves_at(due, deadline)`` on the clock (due: its intended time), and its answer
    comes SERVICE later. Returns the run and the latencies it recorded."""
    clock = Clock()
    monkeypatch.setattr(open_loop, "time", clock)
    recorded: list[float] = []

    async def main() -> OpenLoopRun:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with suppress(asyncio.IncompleteReadError, ConnectionError):  # the client's end of the run
                while await reader.readuntil(b"\r\n\r\n"):
                    clock.now += SERVICE  # the answer's time, which the client reads when it arrives
                    writer.write(OK)
                    await writer.drain()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        spec = LoadSpec(url=f"http://127.0.0.1:{port}/", duration=sends * INTERVAL, connections=1, rate=RATE)
        run = OpenLoopRun(spec, Target(spec.url), timeout=BuiltinClient().timeout)
        record = run._record

        def record_then_move_on(kind: int, status: int, latency: float) -> None:
            record(kind, status, latency)
            recorded.append(latency)
            due = run.start + len(recorded) * INTERVAL  # the next send's intended time
            clock.now = leaves_at(due, run.deadline) if due < run.deadline else due

        monkeypatch.setattr(run, "_record", record_then_move_on)
        clock.now = leaves_at(run.start, run.deadline)
        try:
            await asyncio.wait_for(run.slot(0), timeout=10)
        finally:
            server.close()
        return run

    return asyncio.run(main()), recorded


@pytest.mark.parametrize(
    ("lateness", "late"),
    [
        pytest.param(0.0019, 0, id="1.9 ms: on time"),
        pytest.param(0.0021, 1, id="2.1 ms: late"),
    ],
)
def test_late_sends_are_those_leaving_more_than_2_ms_after_their_time(
    monkeypatch: pytest.MonkeyPatch, lateness: float, late: int
) -> None:
    """Eight sends, the fourth leaving ``lateness`` after its intended time and the others on time: counted
    late only past 2 ms, and its latency counted from the intended time (lateness plus the answer's time)."""
    run, latencies = run_scripted(monkeypatch, 8, lambda due, _: due + (lateness if due == 3 * INTERVAL else 0))
    assert (run.requests, run.errors, run.late) == (8, 0, late)
    assert latencies[3] == pytest.approx(lateness + SERVICE, abs=1e-9)
    assert max(latencies[:3] + latencies[4:]) == pytest.approx(SERVICE, abs=1e-9)


def test_late_sends_are_counted_one_per_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every send of a run 1.9 ms, 2.1 ms, 0, 2.5 ms, 1 ms, 1.9 ms, 50 ms, 2.1 ms late: four of eight."""
    lateness = [0.0019, 0.0021, 0.0, 0.0025, 0.001, 0.0019, 0.05, 0.0021]
    run, _ = run_scripted(monkeypatch, 8, lambda due, _: due + lateness[round(due / INTERVAL)])
    assert (run.requests, run.errors, run.late) == (8, 0, 4)


@pytest.mark.parametrize(
    ("after_the_run", "sent", "errors"),
    [
        pytest.param(1.999, 8, 0, id="1.999 s after the run: sent, late"),
        pytest.param(2.0, 3, 5, id="2 s after the run: the five unsent are errors"),
    ],
)
def test_sends_still_unsent_2_s_after_the_run_count_as_errors(
    monkeypatch: pytest.MonkeyPatch, after_the_run: float, sent: int, errors: int
) -> None:
    """Eight intended sends; after the third the client is held until ``after_the_run`` seconds past the run's
    end (a stalled client or server). The five left still go just before the 2 s (the builtin client's
    timeout); from 2 s they are counted as errors, one each, never sent."""

    def leaves_at(due: float, deadline: float) -> float:
        return due if due < 3 * INTERVAL else max(due, deadline + after_the_run)

    run, _ = run_scripted(monkeypatch, 8, leaves_at)
    assert (run.requests, run.errors) == (sent, errors)
    assert run.late == sent - 3
    result = run.result("builtin", cpu=0.0, waited=0.0)
    assert (result.requests, result.errors, result.late_sends) == (sent, errors, sent - 3)


def test_percentiles_are_within_0_1_percent_of_the_latencies_recorded() -> None:
    """10,000 latencies spread over six decades (0.3 ms to 5 min, whole microseconds): p50, p90, p99, p99.9,
    the maximum and every whole percentile are the recorded value at that rank or at most 0.1% above it.
    A histogram of 2 significant digits is up to 0.8% off and fails this (checked by the last lines)."""
    draw = random.Random(7)
    microseconds = [round(math.exp(draw.uniform(math.log(300), math.log(300e6)))) for _ in range(10_000)]
    spec = LoadSpec(url="http://127.0.0.1:9/", duration=1, connections=1, rate=1)  # nothing is sent
    run = OpenLoopRun(spec, Target(spec.url), timeout=2.0)
    for value in microseconds:
        run._record(0, 200, value / 1_000_000)
    ordered = sorted(microseconds)

    def off(percentile: float, reported_ms: float) -> float:
        """How far above the recorded value at the percentile's rank the reported one is, as a share of it."""
        exact = ordered[max(1, int(percentile * len(ordered) / 100 + 0.5)) - 1] / 1000
        assert reported_ms >= exact, (percentile, reported_ms, exact)
        return (reported_ms - exact) / exact

    result = run.result("builtin", cpu=0.0, waited=0.0)
    reported = {50: result.p50_ms, 90: result.p90_ms, 99: result.p99_ms, 99.9: result.p999_ms, 100: result.max_ms}
    reported |= {p: open_loop._ms(run.histogram, p) for p in range(1, 100)}
    worst = max(off(p, ms) for p, ms in reported.items())
    assert worst <= 0.001, worst
    assert worst > 0.0005, worst  # and 3 significant digits, as the manual says: 4 would stay within 0.012%

    from hdrh.histogram import HdrHistogram

    two_digits = HdrHistogram(1, open_loop.HISTOGRAM_MAX_US, 2)
    for value in microseconds:
        two_digits.record_value(value)
    assert max(off(p, open_loop._ms(two_digits, p)) for p in range(1, 100)) > 0.001
