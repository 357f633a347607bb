"""Worker processes under pyfly-hydra's care: the supervisor, crash and recycling policies, signals, reload."""
