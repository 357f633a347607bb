"""Rounds, uncertainty and ties on synthetic records (the statistics alone; a real sweep is in test_bench)."""

from __future__ import annotations

import random

import pytest

from pyfly_hydra.bench.report.uncertainty import rank_configurations, tie_break_rule
from pyfly_hydra.bench.rounds import shuffled_within_rounds

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


def _called_worse(configurations: int, rounds: int, trials: int, seed: int) -> float:
    """How often a configuration identical to the others is called worse than the best, over ``trials`` sweeps of
    ``configurations`` identical configurations (+-10% a round, as this machine) with ``rounds`` rounds each."""
    draw = random.Random(seed)
    worse = 0
    for _ in range(trials):
        records = [
            record
            for label in range(configurations)
            for record in _records(str(label), [draw.gauss(10_000, 1_000) for _ in range(rounds)])
        ]
        ranked = rank_configurations(records, "rps", bigger_is_better=True)
        worse += sum(c.verdict == "worse" for c in ranked)
    return worse / (trials * (configurations - 1))


@pytest.mark.parametrize("rounds", range(2, 11))
def test_identical_configurations_are_called_different_at_most_5_percent_of_the_time(rounds: int) -> None:
    """Two identical configurations (the best then picked from the two by chance), and a grid of six: at every n
    the tool allows, an identical configuration is called worse at most 5% of the time (the verdict aims at 2.5%)."""
    assert _called_worse(2, rounds, trials=1_500, seed=rounds) <= 0.05
    assert _called_worse(6, rounds, trials=300, seed=100 + rounds) <= 0.05


def test_two_rounds_still_tell_a_clear_difference_apart() -> None:
    """Calibrated is not blind: at n=2, eight configurations 20% below the best by +-3% rounds are called worse."""
    records = _records("best", [12_000, 12_300])
    draw = random.Random(3)
    for label in range(8):
        records += _records(f"slow{label}", [draw.gauss(10_000, 300) for _ in range(2)])
    verdicts = {c.label: c.verdict for c in rank_configurations(records, "rps", bigger_is_better=True)}
    assert verdicts.pop("best") == "best" and set(verdicts.values()) == {"worse"}, verdicts


def test_a_best_with_one_round_is_still_compared_when_others_have_two() -> None:
    """The noise comes from every configuration's rounds, so one round of the best does not silence the rest."""
    records = _records("a", [10_000.0]) + _records("b", [9_990.0, 10_020.0]) + _records("c", [6_000.0, 6_050.0])
    verdicts = {c.label: c.verdict for c in rank_configurations(records, "rps", bigger_is_better=True)}
    assert verdicts == {"a": "best", "b": "tie", "c": "worse"} or verdicts == {"b": "winner", "a": "tie", "c": "worse"}


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


def test_each_round_is_shuffled_on_its_own_and_rounds_keep_their_order() -> None:
    grid = [[f"bench.round={n}", f"server={name}"] for n in (1, 2, 3) for name in "ABCDEF"]
    ordered = shuffled_within_rounds(grid, seed=0)
    assert [job[0] for job in ordered] == [job[0] for job in grid]  # round-major still
    rounds = [[job[1] for job in ordered if job[0] == f"bench.round={n}"] for n in (1, 2, 3)]
    assert all(sorted(names) == [f"server={name}" for name in "ABCDEF"] for names in rounds)
    assert len({tuple(names) for names in rounds}) == 3  # no two rounds in the same order
    assert shuffled_within_rounds(grid, seed=0) == ordered != shuffled_within_rounds(grid, seed=1)  # seeded
    plain = [["server=A"], ["server=B"]]  # no rounds: the grid's own order
    assert shuffled_within_rounds(plain, seed=0) == plain
