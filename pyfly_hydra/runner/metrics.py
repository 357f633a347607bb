"""``/metrics``: the server's numbers in Prometheus' text format, the same names on every server.

Each worker counts its requests in its own file (``worker.metrics``); this collector sums the files when it is
scraped. A file whose worker is gone is folded into the retired totals and removed, so a counter never goes
back when a worker is recycled, rolled or dies. What only the runner knows is added: worker starts and exits
by reason (``supervision.lifecycle``), each worker's memory and CPU (by pid, from the OS), whether the server
is ready, and what runs. The exposition itself is prometheus_client's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pyfly_hydra.supervision.lifecycle import WORKER_EVENTS
from pyfly_hydra.system.readiness import READINESS, SERVING
from pyfly_hydra.worker.metrics import (
    BUCKETS,
    DURATION_BUCKETS,
    DURATION_SUM,
    FILE_SUFFIX,
    METHODS,
    RESPONSE_BYTES,
    SLOTS,
    STARTED,
    STATUS_CLASSES,
    finished_requests,
    read_slots,
    request_slot,
    worker_pid,
)

PREFIX = "pyfly_hydra"


def _alive(pid: int) -> bool:
    """Whether worker ``pid`` may still count (an exited one not yet reaped has counted its last)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass(eq=False)  # registered in a set: hashed by identity
class ServerMetrics(Collector):
    """A prometheus_client collector over the workers' files in ``directory``, for one run of ``server``."""

    directory: Path
    info: dict[str, str]  # server, server_version, loop, version: the info metric's labels
    retired: list[float] = field(default_factory=lambda: [0.0] * SLOTS)  # the counts of workers that are gone
    lock: threading.Lock = field(default_factory=threading.Lock)  # scrapes may overlap (one thread each)

    def totals(self) -> tuple[list[float], list[int]]:
        """Every slot summed over the live workers and the retired ones, and the live workers' pids."""
        with self.lock:
            totals, live = list(self.retired), []
            for path in sorted(self.directory.glob(f"*{FILE_SUFFIX}")):
                slots = read_slots(path)
                if slots is None:
                    continue
                pid = worker_pid(path)
                if _alive(pid):
                    live.append(pid)
                else:
                    slots[STARTED] = finished_requests(slots)  # what it had in flight ended with it
                    self.retired = [kept + final for kept, final in zip(self.retired, slots, strict=True)]
                    path.unlink(missing_ok=True)
                totals = [total + value for total, value in zip(totals, slots, strict=True)]
            return totals, live

    def collect(self) -> Iterator[Metric]:
        totals, live = self.totals()
        requests = CounterMetricFamily(
            f"{PREFIX}_requests", "HTTP requests answered, by method and status class", labels=("method", "status")
        )
        for method in METHODS:
            for status_index, status in enumerate(STATUS_CLASSES):
                requests.add_metric((method, status), totals[request_slot(method, (status_index + 1) * 100)])
        yield requests
        in_flight = totals[STARTED] - finished_requests(totals)
        yield GaugeMetricFamily(f"{PREFIX}_requests_in_flight", "HTTP requests in the app now", in_flight)
        cumulative, buckets = 0.0, []
        for index, bound in enumerate((*DURATION_BUCKETS, float("inf"))):
            cumulative += totals[BUCKETS + index]
            buckets.append((_bound(bound), cumulative))
        yield HistogramMetricFamily(
            f"{PREFIX}_request_duration_seconds",
            "Time from the call into the app to the end of its response",
            buckets=buckets,
            sum_value=totals[DURATION_SUM],
        )
        yield CounterMetricFamily(f"{PREFIX}_response_body_bytes", "Response body bytes sent", totals[RESPONSE_BYTES])
        yield from self._workers(live)
        ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 while every worker serves; 0 starting or draining")
        ready.add_metric((), 1.0 if READINESS.state == SERVING else 0.0)
        yield ready
        info = InfoMetricFamily(PREFIX, "What serves: the server, its version, the event loop, pyfly-hydra's version")
        info.add_metric((), self.info)
        yield info

    @staticmethod
    def _workers(live: list[int]) -> Iterator[Metric]:
        yield GaugeMetricFamily(f"{PREFIX}_workers", "Worker processes counting requests now", len(live))
        yield CounterMetricFamily(f"{PREFIX}_worker_starts", "Worker processes started", WORKER_EVENTS.starts)
        exits = CounterMetricFamily(f"{PREFIX}_worker_exits", "Worker processes gone, by reason", labels=("reason",))
        for reason, count in WORKER_EVENTS.exits.items():
            exits.add_metric((reason,), count)
        yield exits
        memory = GaugeMetricFamily(
            f"{PREFIX}_worker_resident_memory_bytes", "Each worker's resident memory", labels=("worker",)
        )
        cpu = CounterMetricFamily(f"{PREFIX}_worker_cpu_seconds", "Each worker's CPU time", labels=("worker",))
        for pid in live:
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    rss, times = process.memory_info().rss, process.cpu_times()
            except psutil.Error:
                continue
            memory.add_metric((str(pid),), rss)
            cpu.add_metric((str(pid),), times.user + times.system)
        yield memory
        yield cpu


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
