"""pyfly-hydra's launcher for benchmark sweeps on a Ray cluster: ``hydra/launcher=ray_bench``."""
