"""Tuning: a model-based search over servers, loops and their settings (``hydra/sweeper=tune``)."""
