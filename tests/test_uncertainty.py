"""Rounds, uncertainty and ties on synthetic records (the statistics alone; a real sweep is in test_bench)."""

from __future__ import annotations

import itertools
import random

import pytest

from pyfly_hydra.bench.report.uncertainty import rank_configurations, tie_break_rule

ROUNDS = 3


def _records(label: str, values: list[float], *, p99: float = 1.0, cpu: float = 50.0) -> list[dict]:
    return [
        {"label": label, "round": n, "status": "ok", "errors": 0, "rps": value, "p99_ms": p99,
         "server_cpu_percent": cpu, "server_peak_rss_mib": 40.0}
        for n, value in enumerate(values, start=1)
    ]  # fmt: skip


def _verdicts(a: list[float], b: list[float]) -> dict[str, str]:
    ranked = rank_configurations(_records("a", a) + _records("b", b), "rps", bigger_is_better=True)
    return {c.label: c.verdict for c in ranked}


def test_identical_distributions_are_a_tie_in_nearly_every_draw() -> None:
    draw = random.Random(1)
    trials = 300
    ties = 0
    for _ in range(trials):
        a = [draw.gauss(10_000, 1_000) for _ in range(ROUNDS)]  # +-10% per run, as this machine
        b = [draw.gauss(10_000, 1_000) for _ in range(ROUNDS)]
        ties += "tie" in _verdicts(a, b).values()
    # Three rounds each: the only way out of a tie is all of one below all of the other, 1 in 10 by chance.
    assert ties / trials >= 0.85, ties


@pytest.mark.parametrize("spacing", [1.0, 1_000.0], ids=["0.01% apart", "10% apart"])
def test_three_rounds_escape_a_tie_in_exactly_1_of_10_orders(spacing: float) -> None:
    """Two identical setups, three rounds each: the six rounds' order is any of the C(6,3) = 20 ways to pick
    which three are A's, all equally likely. A tie is escaped in exactly two of them, all of A's rounds below
    all of B's or above, so 1 time in 10 (sweeps.md), whatever the spacing: another rule escapes in 0 or at
    least 4 of the 20 (the two sides mirror each other), 1 in 5 or more."""
    escaped = []
    for ranks in itertools.combinations(range(1, 7), ROUNDS):
        a = [10_000 + spacing * rank for rank in ranks]
        b = [10_000 + spacing * rank for rank in range(1, 7) if rank not in ranks]
        verdicts = _verdicts(a, b)
        if "tie" not in verdicts.values():
            assert sorted(verdicts.values()) == ["best", "worse"], verdicts
            escaped.append(ranks)
    assert escaped == [(1, 2, 3), (4, 5, 6)]


def test_a_thirty_percent_difference_with_tight_spread_is_not_a_tie() -> None:
    draw = random.Random(2)
    trials = 300
    told_apart = 0
    for _ in range(trials):
        a = [draw.gauss(13_000, 260) for _ in range(ROUNDS)]  # 30% faster, +-2%
        b = [draw.gauss(10_000, 200) for _ in range(ROUNDS)]
        verdicts = _verdicts(a, b)
        told_apart += verdicts == {"a": "best", "b": "worse"}
    assert told_apart == trials


def test_one_round_says_it_has_no_confidence() -> None:
    assert _verdicts([10_000.0], [9_000.0]) == {"a": "best", "b": "n=1"}


def test_the_tie_break_rule_picks_the_winner_among_the_tied() -> None:
    records = _records("fast-but-slow-tail", [10_100, 9_800, 10_300], p99=9.0)
    records += _records("steady", [10_000, 10_200, 9_900], p99=2.0)
    records += _records("slow", [6_000, 6_100, 5_900], p99=1.0)
    ranked = rank_configurations(records, "rps", bigger_is_better=True)
    assert [(c.label, c.verdict) for c in ranked] == [
        ("steady", "winner"), ("fast-but-slow-tail", "tie"), ("slow", "worse"),
    ]  # fmt: skip
    assert tie_break_rule(True) == "lower p99, then lower server CPU, then lower peak RSS"
    slow = ranked[2]
    assert slow.ratio_interval is not None and slow.ratio_interval[1] < 1.0 and 0.55 < slow.ratio < 0.65


def test_rounds_with_errors_or_failures_rank_after_clean_ones() -> None:
    records = _records("clean", [5_000.0, 5_100.0]) + _records("errors", [9_000.0, 9_100.0])
    records[-1]["errors"] = 3
    records += [{"label": "failed", "round": 1, "status": "failed", "errors": 0, "reason": "no"}]
    ranked = rank_configurations(records, "rps", bigger_is_better=True)
    assert [(c.label, c.verdict) for c in ranked] == [("clean", "best"), ("errors", "errors"), ("failed", "failed")]


def test_a_latency_metric_prefers_lower_values() -> None:
    records = [dict(r, p99_ms=v) for r, v in zip(_records("a", [1, 1, 1]), [5.0, 5.2, 5.1], strict=True)]
    records += [dict(r, p99_ms=v) for r, v in zip(_records("b", [1, 1, 1]), [2.0, 2.1, 2.05], strict=True)]
    ranked = rank_configurations(records, "p99_ms", bigger_is_better=False)
    assert [(c.label, c.verdict) for c in ranked] == [("b", "best"), ("a", "worse")]
