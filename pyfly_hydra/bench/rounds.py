"""Rounds: a sweep measures every configuration ``bench.rounds`` times, the rounds interleaved and shuffled.

``conf/mode/bench.yaml`` puts ``bench.round`` first among the sweeper's parameters, so it varies slowest: round 1
of every configuration, then round 2 of every one (A B C A B C, never A A A B B B, since a shared machine drifts
within minutes). Within each round the configurations run in a seeded random order (``hydra.sweeper.shuffle``,
on by default; the rounds sweeper, ``hydra_plugins/pyfly_hydra_rounds``), so no configuration always runs right
after the same neighbour, whose heat or caches it would inherit: Abedi and Brecht's randomised multiple
interleaved trials (ICPE 2017).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from omegaconf import OmegaConf

from pyfly_hydra.errors import ConfigError

RESOLVER = "sweep_rounds"
ROUND_KEY = "bench.round"
MAX_ROUNDS = 50


def sweep_rounds(rounds: object) -> str:
    """``${sweep_rounds:3}`` -> ``"1,2,3"``: the sweep values of ``bench.round``."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        raise ConfigError("bench.rounds", rounds, f"must be an integer 1..{MAX_ROUNDS}")
    return ",".join(str(number) for number in range(1, rounds + 1))


def register_rounds_resolver() -> None:
    """Register ``sweep_rounds`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, sweep_rounds)


def shuffled_within_rounds(jobs: Sequence[Sequence[str]], *, seed: int) -> list[list[str]]:
    """``jobs`` (each a list of overrides, round-major) with each round's jobs in a random order drawn from ``seed``
    and the round's number; jobs without a ``bench.round`` override keep their place."""
    ordered: list[list[str]] = []
    for number, same_round in itertools.groupby(jobs, key=_round_of):
        run = [list(job) for job in same_round]
        if number is not None:
            random.Random(f"{seed}:{number}").shuffle(run)
        ordered += run
    return ordered


def _round_of(job: Sequence[str]) -> str | None:
    return next((override.split("=", 1)[1] for override in job if override.startswith(f"{ROUND_KEY}=")), None)
