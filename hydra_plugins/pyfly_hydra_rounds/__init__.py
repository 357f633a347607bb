"""pyfly-hydra's grid sweeper: ``hydra/sweeper=rounds`` (see :mod:`.rounds_sweeper`)."""
