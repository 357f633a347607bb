"""Capacity under a latency goal (``bench.slo_p99_ms``): the highest open-loop rate whose p99 meets it.

The search starts from the closed-loop throughput T of a short probe (no rate far above T can be served at
this concurrency). It steps up from T/4, doubling, until a step fails; then bisects between the last rate that
passed and the first that failed until they are within ``precision`` of each other; then runs the best rate
once more, and only a rate that passed twice is the capacity (a fluke pass is bisected away). Each step is one
open-loop run of ``step_seconds``; the search stops when its next step would overrun ``budget_seconds``.
A step passes when it had no errors, its p99 met the goal and it achieved 95% of its rate; a narrow miss is
run again, and the rate fails only when both missed (one hiccup of a shared machine is not a verdict), while
a clear miss (p99 over 3 times the goal, or under 80% of the rate achieved) fails at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pyfly_hydra.bench.clients.base import LoadResult

FIRST_SHARE = 1 / 4  # the first step's rate, as a share of the closed-loop throughput
CLEAR_MISS = 3  # a step whose p99 is over this many times the goal missed it for certain: no second run
ACHIEVED_SHARE = 0.95  # a step must complete this share of its rate
CONFIRM_STEPS = 2  # the confirming run lasts this many steps: just above capacity a queue grows with time
BEYOND = 1.3  # after the search, one step at this many times the capacity shows the knee
CONNECTIONS_SHARE = 0.8  # a capacity this close to what the connections can carry was limited by them
# What stopped the search, as the log says it.
LIMITS = {
    "slo": "the next rate up missed the goal",
    "client": "the load client's CPU was the limit, not the server: pin them apart or add client CPUs",
    "connections": "bench.connections were the limit (one request in flight each): raise it",
    "budget": "bench.capacity.budget_seconds ran out before a rate passed twice: raise it",
    "unsteady": "1.3 times the capacity met the goal too: the steps were noise (a busy machine?); pin and rerun",
}


@dataclass(frozen=True)
class Step:
    """One open-loop run of the search."""

    rate: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_saturated: bool
    passed: bool


@dataclass
class Capacity:
    """What the search found: ``rate`` (0 when even the first step failed) and how it got there."""

    slo_p99_ms: float
    probe_rps: float  # the closed-loop throughput the search started from
    rate: float = 0.0
    confirmed: LoadResult | None = None  # the second run at ``rate``
    steps: list[Step] = field(default_factory=list)
    beyond: Step | None = None  # one step at BEYOND times the capacity, which should miss the goal
    limit: str = "slo"  # a key of LIMITS

    def record(self) -> dict[str, Any]:
        """For bench.json."""
        return {
            "slo_p99_ms": self.slo_p99_ms,
            "rate": round(self.rate, 1),
            "limit": self.limit,
            "probe_rps": round(self.probe_rps, 1),
            "steps": [asdict(step) for step in self.steps],
            "beyond": asdict(self.beyond) if self.beyond else None,
        }


def step_passes(result: LoadResult, rate: float, slo_p99_ms: float) -> bool:
    """Whether an open-loop run at ``rate`` met the goal."""
    return result.errors == 0 and result.p99_ms <= slo_p99_ms and result.rps >= ACHIEVED_SHARE * rate


def clear_miss(result: LoadResult, rate: float, slo_p99_ms: float) -> bool:
    """A miss no hiccup explains: p99 over ``CLEAR_MISS`` times the goal, or under 80% of the rate achieved."""
    return result.p99_ms > CLEAR_MISS * slo_p99_ms or result.rps < 0.8 * rate


def find_capacity(
    run_at: Callable[[float, float], LoadResult],
    *,
    probe_rps: float,
    connections: int,
    slo_p99_ms: float,
    step_seconds: float,
    budget_seconds: float,
    precision: float = 0.05,
) -> Capacity:
    """Search the capacity with ``run_at(rate, seconds)`` (one open-loop run at ``rate`` for ``seconds``)."""
    capacity = Capacity(slo_p99_ms=slo_p99_ms, probe_rps=probe_rps)
    steps_left = max(1, math.floor(budget_seconds / step_seconds))
    results: dict[float, LoadResult] = {}

    def run_once(rate: float, steps: int = 1) -> bool:
        nonlocal steps_left
        steps_left -= steps
        result = run_at(rate, steps * step_seconds)
        passed = step_passes(result, rate, slo_p99_ms)
        step = Step(rate, result.rps, result.p50_ms, result.p99_ms, result.errors, result.saturated, passed)
        capacity.steps.append(step)
        results[rate] = result
        return passed

    def passes(rate: float) -> bool:
        """A narrow miss is run again: a rate fails when it misses twice (one hiccup of the machine is not a
        verdict); a clear miss (an overloaded server) fails at once."""
        if run_once(rate):
            return True
        return not clear_miss(results[rate], rate, slo_p99_ms) and steps_left > 0 and run_once(rate)

    good, bad = 0.0, math.inf
    rate = max(1.0, probe_rps * FIRST_SHARE)
    while steps_left > 0 and bad == math.inf:  # step up
        if passes(rate):
            good, rate = rate, rate * 2
        else:
            bad = rate
    while steps_left > 0 and good > 0:  # bisect, then confirm the best
        if bad / good - 1 > precision and bad != math.inf:
            middle = (good + bad) / 2
            if passes(middle):
                good = middle
            else:
                bad = middle
        elif steps_left >= CONFIRM_STEPS and run_once(good, CONFIRM_STEPS):
            capacity.rate, capacity.confirmed = good, results[good]
            break
        elif steps_left >= CONFIRM_STEPS:  # the best pass was a fluke: look below it
            bad, good = good, max((step.rate for step in capacity.steps if step.passed and step.rate < good), default=0)
        else:
            break
    if capacity.confirmed is None:
        capacity.rate = good  # not confirmed: 0 when nothing passed
        capacity.limit = "budget" if steps_left <= 0 and good > 0 else "slo"
        return capacity
    if bad != math.inf and results[bad].saturated:
        capacity.limit = "client"
    elif capacity.rate >= CONNECTIONS_SHARE * connections_ceiling(capacity, connections):
        capacity.limit = "connections"
    # The knee, shown: one step beyond the capacity, outside the budget; when it passes too, the steps were noise.
    result = run_at(BEYOND * capacity.rate, step_seconds)
    passed = step_passes(result, BEYOND * capacity.rate, slo_p99_ms)
    capacity.beyond = Step(
        BEYOND * capacity.rate, result.rps, result.p50_ms, result.p99_ms, result.errors, result.saturated, passed
    )
    if passed and capacity.limit == "slo":
        capacity.limit = "unsteady"
    return capacity


def connections_ceiling(capacity: Capacity, connections: int) -> float:
    """The most requests/s ``connections`` can carry at the unloaded latency (Little's law: one request in
    flight per connection); the lowest median of the passing steps stands in for that latency."""
    latencies = [step.p50_ms for step in capacity.steps if step.passed and step.p50_ms > 0]
    return connections * 1000 / min(latencies) if latencies else math.inf
