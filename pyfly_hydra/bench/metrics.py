"""The metrics a benchmark job returns to Hydra's sweepers, and whether bigger is better for each."""

from __future__ import annotations

METRICS: dict[str, bool] = {"rps": True, "p50_ms": False, "p90_ms": False, "p99_ms": False, "capacity": True}
