"""Request metrics as a worker counts them (``server.metrics.port``): plain numbers in a shared file the runner reads.

Each worker maps one file of float64 slots (``SLOTS``) and adds to them in place as requests finish: a
few array stores per request, no lock on an event loop, no syscall. The runner's admin listener
(``runner.metrics``) maps every worker's file when it is scraped, sums them, and keeps a dead worker's last
counts, so counters never go back. prometheus_client's own multiprocess mode does the same with a
dictionary lookup, a lock and a ``struct`` pack per value: 5.0 us per request against 0.74 us here (the
same five numbers, docs/guides/metrics.md); the exposition is still prometheus_client's.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from bisect import bisect_left
from pathlib import Path

# The label values a request is counted under: a method outside the table (a client chooses it) is OTHER.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Upper bounds of the request-duration histogram's buckets, in seconds (+Inf is the last bucket).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The file's slots, each a float64. In flight is STARTED less the requests counted as done, at scrape time: one
# addition per request fewer than a gauge kept up and down.
STARTED = 0
RESPONSE_BYTES = 1
DURATION_SUM = 2
BUCKETS = 3  # len(DURATION_BUCKETS) + 1 per-bucket (not cumulative) counts
REQUESTS = BUCKETS + len(DURATION_BUCKETS) + 1  # len(METHODS) x len(STATUS_CLASSES) counts, method-major
SLOTS = REQUESTS + len(METHODS) * len(STATUS_CLASSES)
SLOT_BYTES = 8
FILE_SUFFIX = ".metrics"

_METHOD_INDEX = {method: index for index, method in enumerate(METHODS)}
_OTHER = _METHOD_INDEX["OTHER"]


def request_slot(method: str, status: int) -> int:
    """The slot counting requests of ``method`` answered with ``status``."""
    status_class = min(max(status // 100, 1), 5) - 1
    return REQUESTS + _METHOD_INDEX.get(method, _OTHER) * len(STATUS_CLASSES) + status_class


def worker_pid(path: Path) -> int:
    """The pid of the worker that writes ``path`` (its name is ``<pid>-<nanoseconds>.metrics``)."""
    return int(path.name.partition("-")[0])


class WorkerMetrics:
    """One worker's counts, in its file under the run's metrics directory."""

    def __init__(self, directory: str) -> None:
        path = Path(directory) / f"{os.getpid()}-{time.time_ns()}{FILE_SUFFIX}"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(descriptor, SLOTS * SLOT_BYTES)
            self._map = mmap.mmap(descriptor, SLOTS * SLOT_BYTES)
        finally:
            os.close(descriptor)
        self.slots = memoryview(self._map).cast("d")
        self._request_slots: dict[tuple[str, int], int] = {}
        # WSGI apps are called on several threads (granian's blocking threads): an add is a read and a write.
        self.lock = threading.Lock()

    def started(self) -> None:
        self.slots[STARTED] += 1

    def finished(self, method: str, status: int, sent: int, seconds: float) -> None:
        """One request done: ``sent`` body bytes, ``seconds`` from the call into the app to its last byte.
        Positional, and the slot of each (method, status) found once: this runs for every request."""
        slots = self.slots
        slot = self._request_slots.get((method, status))
        if slot is None:
            slot = request_slot(method, status)
            if method in _METHOD_INDEX and 100 <= status < 600:  # a client's own method is never a key: bounded
                self._request_slots[method, status] = slot
        slots[slot] += 1
        slots[RESPONSE_BYTES] += sent
        slots[DURATION_SUM] += seconds
        slots[BUCKETS + bisect_left(DURATION_BUCKETS, seconds)] += 1


def finished_requests(slots: list[float]) -> float:
    """How many requests ``slots`` counts as done (every method and status)."""
    return sum(slots[REQUESTS:SLOTS])


def read_slots(path: Path) -> list[float] | None:
    """A worker file's slots as they are now; None when the file is gone or not yet its full size."""
    try:
        with path.open("rb") as file:
            data = file.read(SLOTS * SLOT_BYTES)
    except FileNotFoundError:
        return None
    if len(data) < SLOTS * SLOT_BYTES:
        return None
    return list(memoryview(data).cast("d"))
