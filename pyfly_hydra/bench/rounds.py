"""Rounds: a sweep measures every configuration ``bench.rounds`` times, the rounds interleaved.

``conf/mode/bench.yaml`` puts ``bench.round`` first among the sweeper's parameters, so Hydra's basic sweeper
varies it slowest: round 1 of every configuration, then round 2 of every one (A B C A B C, never A A A B B B,
since a shared machine drifts within minutes).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from pyfly_hydra.errors import ConfigError

RESOLVER = "sweep_rounds"
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
