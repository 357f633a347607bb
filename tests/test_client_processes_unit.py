"""The builtin client in several processes, in-process: how a run is split, and that the parts merge exactly."""

from __future__ import annotations

import random
from array import array

import pytest

from pyfly_hydra.bench.clients.base import LoadSpec, percentile
from pyfly_hydra.bench.clients.builtin import ClosedLoopPart, closed_loop_result
from pyfly_hydra.bench.clients.http1 import Target
from pyfly_hydra.bench.clients.processes import split

URL = "http://127.0.0.1:8000/"


def test_a_run_is_split_by_connections_and_the_rate_and_cap_follow() -> None:
    parts = split(LoadSpec(URL, duration=5, connections=7, rate=700.0, requests=7000), 3)
    assert [part.connections for part in parts] == [3, 2, 2]
    assert [part.rate for part in parts] == pytest.approx([300.0, 200.0, 200.0])  # each connection's pace kept
    assert sum(part.requests or 0 for part in parts) == 7000
    assert len(split(LoadSpec(URL, duration=5, connections=2), 4)) == 2  # never a process without a connection


def test_closed_loop_parts_merge_into_the_percentiles_of_every_response() -> None:
    draw = random.Random(5)
    target = Target(URL)
    latencies = [[draw.lognormvariate(-7, 0.6) for _ in range(5_000)] for _ in range(2)]
    parts = [
        ClosedLoopPart(
            requests=len(values), errors=1, start=10.0 + index, end=20.0, kind_latencies=(array("d", values),),
            kind_errors=(1,), cpu=4.0, waited=0.5,
        )
        for index, values in enumerate(latencies)
    ]  # fmt: skip
    merged = closed_loop_result("builtin", target, parts)
    every = sorted(latencies[0] + latencies[1])
    assert merged.requests == 10_000 and merged.errors == 2 and merged.duration == 10.0
    assert merged.p99_ms == percentile(every, 0.99) * 1000 and merged.p50_ms == percentile(every, 0.5) * 1000
    assert merged.kinds[0].requests == 10_000 and merged.client_threads == 2
    assert merged.process_loads == pytest.approx((0.45, 0.45))
    assert merged.saturated  # one process at the builtin client's saturation share is enough


def test_open_loop_histograms_merge_exactly_into_the_single_histogram_reference() -> None:
    pytest.importorskip("hdrh")
    from pyfly_hydra.bench.clients.open_loop import OpenLoopPart, new_histogram, open_loop_result

    draw = random.Random(6)
    values = [max(1, round(draw.lognormvariate(7, 0.8))) for _ in range(20_000)]  # microseconds
    reference, halves = new_histogram(), [new_histogram(), new_histogram()]
    for index, value in enumerate(values):
        reference.record_value(value)
        halves[index % 2].record_value(value)
    spec = LoadSpec(URL, duration=10, connections=4, rate=2000.0)
    parts = [
        OpenLoopPart(requests=10_000, errors=0, late=3, kind_errors=(0,), kind_histograms=(half.encode(),), cpu=2.0,
                     waited=0.0)
        for half in halves
    ]  # fmt: skip
    merged = open_loop_result("builtin", spec, Target(URL), parts)
    for share, figure in ((50, merged.p50_ms), (90, merged.p90_ms), (99, merged.p99_ms), (99.9, merged.p999_ms)):
        assert figure == reference.get_value_at_percentile(share) / 1000
        exact = sorted(values)[max(0, int(len(values) * share / 100 + 0.5) - 1)] / 1000
        assert figure == pytest.approx(exact, rel=2e-3)  # within the histogram's 3 significant digits
    assert merged.requests == 20_000 and merged.late_sends == 6
