"""Benchmarks: load clients, the ``mode=bench`` task, and the sweep summary callback."""
