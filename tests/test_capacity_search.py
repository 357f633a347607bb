"""The capacity search on a model server whose p99 is known at every rate (no sockets: the search's logic).

The real-server proof is tests/test_capacity.py."""

from __future__ import annotations

import math
from collections.abc import Callable

from pyfly_hydra.bench.capacity import Capacity, find_capacity
from pyfly_hydra.bench.clients.base import LoadResult

KNEE = 1000.0  # the model serves up to this many requests/s within 10 ms, and misses the goal above it
SLO = 50.0


def _result(rate: float, p99_ms: float, *, client_cpu: float = 0.2, errors: int = 0) -> LoadResult:
    return LoadResult(
        client="model", requests=int(rate), errors=errors, duration=1.0, rps=rate, p50_ms=p99_ms / 2,
        p90_ms=p99_ms, p99_ms=p99_ms, client_cpu=client_cpu, client_threads=1, rate=rate,
    )  # fmt: skip


def _knee(rate: float, seconds: float = 1) -> LoadResult:
    return _result(rate, 10.0 if rate <= KNEE else 400.0)


def _search(run_at: Callable[[float, float], LoadResult], *, budget: float = 60, connections: int = 64) -> Capacity:
    return find_capacity(
        run_at, probe_rps=1500, connections=connections, slo_p99_ms=SLO, step_seconds=1, budget_seconds=budget
    )


def test_the_capacity_is_the_knee_within_the_precision_and_passed_twice() -> None:
    runs: list[tuple[float, float]] = []

    def knee(rate: float, seconds: float) -> LoadResult:
        runs.append((rate, seconds))
        return _knee(rate)

    capacity = _search(knee)
    assert runs[-2] == (capacity.rate, 2)  # the confirming run lasts two steps
    assert runs[-1] == (1.3 * capacity.rate, 1) and capacity.beyond is not None and not capacity.beyond.passed
    assert KNEE / 1.05 <= capacity.rate <= KNEE, capacity
    assert capacity.limit == "slo" and capacity.confirmed is not None
    assert [step.rate for step in capacity.steps].count(capacity.rate) == 2  # found, then confirmed
    assert capacity.steps[0].rate == 1500 / 4  # stepping up from a quarter of the closed-loop probe


def test_one_hiccup_does_not_lower_the_capacity() -> None:
    calls: list[float] = []

    def hiccup_once(rate: float, seconds: float) -> LoadResult:
        calls.append(rate)
        return _result(rate, 120.0) if len(calls) == 2 else _knee(rate)  # the machine stalls during the 2nd step

    capacity = _search(hiccup_once)
    assert KNEE / 1.05 <= capacity.rate <= KNEE, capacity.steps
    assert calls[1] == calls[2]  # the miss was run again


def test_a_clear_miss_is_not_run_again() -> None:
    capacity = _search(_knee)  # above the knee the model's p99 is 400 ms, 8 times the goal
    misses = [step.rate for step in capacity.steps if not step.passed]
    assert misses and len(misses) == len(set(misses)), capacity.steps


def test_a_fluke_pass_is_not_the_capacity() -> None:
    seen: dict[float, int] = {}

    def fluke(rate: float, seconds: float) -> LoadResult:
        seen[rate] = seen.get(rate, 0) + 1
        lucky = 1000 < rate <= 1100 and seen[rate] == 1  # passes once just above the knee, never again
        return _result(rate, 10.0) if lucky else _knee(rate)

    capacity = _search(fluke)
    assert capacity.rate <= KNEE and capacity.confirmed is not None, capacity.steps


def test_a_capacity_whose_beyond_step_passes_too_is_called_unsteady() -> None:
    confirmed: list[float] = []

    def noise_then_quiet(rate: float, seconds: float) -> LoadResult:
        if seconds == 2:  # the confirming run; after it the machine is quiet and every rate meets the goal
            confirmed.append(rate)
        return _result(rate, 10.0 if confirmed or rate <= KNEE else 400.0)

    capacity = _search(noise_then_quiet)
    assert capacity.limit == "unsteady" and capacity.beyond is not None and capacity.beyond.passed, capacity


def test_nothing_passes() -> None:
    capacity = _search(lambda rate, seconds: _result(rate, 400.0))
    assert capacity.rate == 0 and capacity.confirmed is None and capacity.limit == "slo"


def test_errors_fail_a_step() -> None:
    capacity = _search(lambda rate, seconds: _result(rate, 10.0, errors=1 if rate > KNEE else 0))
    assert KNEE / 1.05 <= capacity.rate <= KNEE


def test_a_saturated_client_is_named_as_the_limit() -> None:
    def saturating(rate: float, seconds: float) -> LoadResult:
        return _result(rate, 10.0 if rate <= KNEE else 400.0, client_cpu=0.95 if rate > KNEE else 0.2)

    capacity = _search(saturating)
    assert capacity.limit == "client", capacity


def test_too_few_connections_are_named_as_the_limit() -> None:
    # 4 connections at the model's 5 ms median carry at most 800 requests/s; the knee at 1000 was theirs.
    capacity = _search(_knee, connections=4)
    assert capacity.limit == "connections", capacity


def test_a_budget_too_small_to_confirm_says_so() -> None:
    capacity = _search(_knee, budget=3)
    assert capacity.limit == "budget" and capacity.confirmed is None and len(capacity.steps) == 3
    assert not math.isnan(capacity.rate) and capacity.rate > 0
