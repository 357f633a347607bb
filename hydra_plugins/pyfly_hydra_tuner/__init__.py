"""pyfly-hydra's Hydra sweeper: ``hydra/sweeper=tune`` (see :mod:`.tune_sweeper`)."""
