"""Worker recycling by lifetime and by memory, for the supervisors pyfly-hydra runs (uvicorn's, hypercorn's).

granian recycles its own workers (``workers_lifetime``, ``workers_max_rss``). Here each worker gets
its own lifetime, ``server.worker_max_lifetime`` plus up to ``LIFETIME_JITTER`` more, so workers
started together do not all retire together; the supervisor replaces one worker at a time, the new
one serving before the old one drains.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

LIFETIME_JITTER = 0.10  # a worker lives worker_max_lifetime x (1 + up to this)
# After a replacement that did not come up (the old worker kept), the next attempt waits this long: a
# new worker whose startup fails (a bad deploy) is not respawned in a loop while the old one serves.
RETRY_SECONDS = 10.0
MIB = 1024 * 1024

logger = logging.getLogger("pyfly_hydra")


@dataclass(frozen=True)
class Recycling:
    """``server.worker_max_lifetime``, ``server.worker_max_rss_mib`` and how often memory is checked."""

    max_lifetime: float | None = None
    max_rss_mib: int | None = None
    rss_check_interval: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.max_lifetime is not None or self.max_rss_mib is not None


@dataclass
class ReplacementRetry:
    """When a supervisor may try its next replacement: at any time, or ``RETRY_SECONDS`` after one whose new
    worker did not come up (the old one kept serving)."""

    _not_before: float = 0.0

    @property
    def allowed(self) -> bool:
        return time.monotonic() >= self._not_before

    def failed(self, failure: str, *, kept_pid: int) -> None:
        """Log ``failure`` (which worker did not come up, and how) and hold off the next attempt."""
        logger.error("%s; keeping pid %s, next attempt in %.0f s", failure, kept_pid, RETRY_SECONDS)
        self._not_before = time.monotonic() + RETRY_SECONDS


@dataclass
class WorkerClock:
    """Tells which worker is due for replacement: the first past its lifetime, or over the memory limit.

    Workers are known by pid; a pid seen for the first time is taken as born then, so workers the
    supervisor respawned for any other reason are timed too.
    """

    recycling: Recycling
    _lifetimes: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (born, lifetime)
    _over_memory: list[tuple[int, str]] = field(default_factory=list)  # from the last check, in turn
    _next_rss_check: float = 0.0

    def __post_init__(self) -> None:
        self._next_rss_check = time.monotonic() + self.recycling.rss_check_interval

    def due(self, pids: list[int]) -> tuple[int, str, str] | None:
        """``(pid, why, reason)`` of one worker to replace now (reason: its exit's label), or ``None``."""
        now = time.monotonic()
        self._lifetimes = {pid: self._lifetimes.get(pid) or (now, self._lifetime()) for pid in pids}
        for pid, (born, lifetime) in self._lifetimes.items():
            if now - born >= lifetime:
                limit = self.recycling.max_lifetime
                why = f"reached its lifetime of {lifetime:.3f} s (server.worker_max_lifetime={limit} + jitter)"
                return pid, why, "recycled_lifetime"
        if self.recycling.max_rss_mib is not None and now >= self._next_rss_check:
            self._next_rss_check = now + self.recycling.rss_check_interval
            oldest_first = sorted(self._lifetimes, key=lambda pid: self._lifetimes[pid][0])
            self._over_memory = self._measure(oldest_first, self.recycling.max_rss_mib)
        while self._over_memory:
            pid, why = self._over_memory.pop(0)
            if pid in self._lifetimes:
                return pid, why, "recycled_memory"
        return None

    def _lifetime(self) -> float:
        if self.recycling.max_lifetime is None:
            return float("inf")
        return self.recycling.max_lifetime * (1 + random.uniform(0, LIFETIME_JITTER))

    @staticmethod
    def _measure(pids: list[int], limit_mib: int) -> list[tuple[int, str]]:
        import psutil

        over = []
        for pid in pids:
            try:
                rss = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > limit_mib * MIB:
                over.append((pid, f"uses {rss / MIB:.0f} MiB, over server.worker_max_rss_mib={limit_mib}"))
        return over
