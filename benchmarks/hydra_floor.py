"""The least a ``@hydra.main`` program pays before its task runs: the floor under pyfly-hydra's start-up.

One composition of Hydra's own configuration with nothing of ours in it (no config file, no schema,
no resolvers), Hydra's job set-up (output dir, logging, .hydra records), then a task that prints one
line. Like pyfly-hydra, it skips Hydra's extra composition that only reads ``hydra.mode``, so the two
are compared like for like. ``benchmarks/compare.py`` times it from exec to that line.
"""

import hydra
from omegaconf import DictConfig

from pyfly_hydra.runner.startup import skip_mode_probe

skip_mode_probe()


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    print("task", flush=True)


if __name__ == "__main__":
    main()
