"""Confirming before naming: the leading configurations are measured again until each has as many rounds as it
takes to trust it, interleaved, and only then is one named best.

A search spends one measurement on most configurations, and on a shared machine one run is 5-15% off, so the best
single figure of twenty is the luckiest as often as the fastest. After the search, the ``contenders`` best
configurations by median are each measured again, one round per contender per pass in a shuffled order, until every
one of the leaders has ``confirm_rounds`` rounds; a contender that falls back is replaced by the one that overtook
it, which is then confirmed in its turn (a race, as in successive halving: the leaders get the jobs). The pass stops
when the leaders are confirmed, or when it has spent ``contenders x confirm_rounds`` jobs.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

# A search trial that drew a configuration already measured, told its median instead of measured again: the search
# spends its jobs on configurations it has not seen (the confirming measures the leaders again).
KNOWN = "known"
CONFIRM = "confirm"  # a trial the confirming ran: a leader measured again


@dataclass
class Standing:
    """Every trial of one configuration (one set of drawn values) so far."""

    params: dict[str, Any]
    values: list[float] = field(default_factory=list)  # every clean round of every trial that drew it
    jobs: int = 0  # rounds run, failed ones included
    failed: bool = False  # a trial of it failed: it is never named best

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def describe(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.params.items())


def standings(study: optuna.Study) -> list[Standing]:
    """The study's configurations, each with the rounds of every trial that drew it."""
    from optuna.trial import TrialState

    by_params: dict[tuple[tuple[str, str], ...], Standing] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if trial.user_attrs.get("phase") == KNOWN:
            continue
        standing = by_params.setdefault(configuration(trial.params), Standing(dict(trial.params)))
        standing.jobs += len(trial.user_attrs.get("jobs", ()))
        if trial.state == TrialState.FAIL:
            standing.failed = True
        else:
            standing.values += trial.user_attrs.get("rounds", [])
    return list(by_params.values())


def configuration(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """What identifies a configuration among a study's trials: the values it drew."""
    return tuple(sorted((name, repr(value)) for name, value in params.items()))


def leaders(candidates: Sequence[Standing], *, contenders: int, maximize: bool) -> list[Standing]:
    """The ``contenders`` best configurations by median; a configuration that ever failed is not one."""
    measured = [s for s in candidates if s.values and not s.failed]
    return sorted(measured, key=lambda s: s.median, reverse=maximize)[:contenders]


def unconfirmed(
    candidates: Sequence[Standing], *, contenders: int, confirm_rounds: int, maximize: bool
) -> list[Standing]:
    """The leaders with fewer than ``confirm_rounds`` rounds: what the next pass measures."""
    ahead = leaders(candidates, contenders=contenders, maximize=maximize)
    return [s for s in ahead if len(s.values) < confirm_rounds]


def shuffled(batch: Sequence[Standing], *, seed: int | None, number: int) -> list[Standing]:
    """A pass's configurations in a random order (seeded by the study's seed and the pass), so none always runs
    right after the same neighbour."""
    order = list(batch)
    random.Random(None if seed is None else f"{seed}:confirm:{number}").shuffle(order)
    return order
