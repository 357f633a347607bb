"""Worker starts and exits by reason, as whichever supervisor runs the workers (pyfly-hydra's or granian's, both
in the runner's process) decides them, for the admin listener's ``/metrics``."""

from __future__ import annotations

import threading

# Why a worker exits: replaced by lifetime, memory or request count, died, killed by the watchdog, replaced by
# a SIGHUP roll or a reload on a change, or stopped with the server.
EXIT_REASONS = (
    "recycled_lifetime", "recycled_memory", "recycled_requests", "crashed", "stuck", "rolled", "reloaded", "stopped",
)  # fmt: skip


class WorkerEvents:
    """Counts since the runner started; granian's watcher threads and the supervisor's loop both add."""

    def __init__(self) -> None:
        self.starts = 0
        self.exits = dict.fromkeys(EXIT_REASONS, 0)
        self._lock = threading.Lock()

    def started(self) -> None:
        with self._lock:
            self.starts += 1

    def exited(self, reason: str, count: int = 1) -> None:
        if reason not in self.exits:
            raise ValueError(f"unknown exit reason {reason!r}; one of {', '.join(EXIT_REASONS)}")
        with self._lock:
            self.exits[reason] += count


WORKER_EVENTS = WorkerEvents()
