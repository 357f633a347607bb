"""``hydra/sweeper=rounds``: Hydra's basic sweeper (the same grid, batches and launchers), each round's jobs
shuffled.

A benchmark sweep (``mode=bench``) varies ``bench.round`` slowest, so its jobs are round-major; this sweeper puts
each round's configurations in a seeded random order (``pyfly_hydra.bench.rounds.shuffled_within_rounds``), so no
configuration always follows the same neighbour. Jobs are numbered in the order they run, so the multirun log and
the job directories show the order. A sweep without rounds runs in the basic sweeper's order.
"""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override

from pyfly_hydra.bench.rounds import shuffled_within_rounds


class RoundsSweeper(BasicSweeper):
    """The basic sweeper whose grid runs each round in its own seeded order (``shuffle``, ``seed``)."""

    def __init__(
        self, *, max_batch_size: int | None = None, params: dict[str, str] | None = None, shuffle: bool = True,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.shuffle, self.seed = shuffle, seed

    def split_arguments(  # type: ignore[override]  # an instance method: the basic sweeper calls it on self
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """The basic sweeper's grid, each round shuffled, then cut into batches of ``max_batch_size``."""
        jobs = BasicSweeper.split_arguments(overrides, None)[0]
        if self.shuffle:
            jobs = shuffled_within_rounds(jobs, seed=self.seed)
        return [list(chunk) for chunk in BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size)]
