"""The builtin client's open loop (``bench.rate``): requests leave on a fixed schedule, answered or not.

Each of the ``connections`` slots sends every ``connections / rate`` seconds, the slots staggered evenly. A
request's latency runs from its *intended* send time, not from when it left: when the server stalls, the
requests that should have gone out meanwhile wait in the client and their wait is counted (no coordinated
omission, as in wrk2). Latencies go into HDR histograms (``hdrhistogram``: 3 significant digits, so every
percentile is within 0.1% of the recorded value). Sends whose intended time falls inside the run but that
have not left ``timeout`` seconds after it ended count as errors, as do requests unanswered after ``timeout``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from pyfly_hydra.bench.clients.base import (
    PROGRESS_INTERVAL,
    KindResult,
    LoadResult,
    LoadSpec,
    ProgressCallback,
    run_queue_wait,
)
from pyfly_hydra.bench.clients.http1 import ResponseParser, Target, kind_chooser

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

LATE_SLACK = 0.002  # seconds: a send that leaves later than this after its intended time is counted late
HISTOGRAM_MAX_US = 3_600_000_000  # an hour, in microseconds
HISTOGRAM_DIGITS = 3  # significant digits: values within 0.1%


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds (the ``hdrhistogram`` package, from the bench extra)."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, HISTOGRAM_MAX_US, HISTOGRAM_DIGITS)


class _Exchange(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends and waits for the whole response."""

    def __init__(self) -> None:
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, float]] | None = None  # (status, perf_counter() at its end)
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.open = True

    async def request(self, payload: bytes) -> tuple[int, float]:
        """Send ``payload``; return the response's status and when it was complete."""
        self.waiter = asyncio.get_running_loop().create_future()
        cast(asyncio.Transport, self.transport).write(payload)
        return await self.waiter

    def data_received(self, data: bytes) -> None:
        try:
            done = self.parser.feed(data)
        except ValueError as error:
            self._end(error)
            return
        if not done:
            return
        if done > 1 or self.waiter is None or self.waiter.done():
            self._end(ValueError("more responses than requests"))
            return
        self.waiter.set_result((self.parser.statuses.pop(), time.perf_counter()))
        if not self.parser.keep_alive:
            self.close()

    def eof_received(self) -> bool:
        if self.parser.feed_eof() and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.statuses.pop(), time.perf_counter()))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the connection closed before the response"))

    def _end(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()


class OpenLoopRun:
    """One open-loop run: its schedule, and what came back."""

    def __init__(self, spec: LoadSpec, target: Target, timeout: float) -> None:
        assert spec.rate is not None and spec.rate > 0
        self.spec, self.target, self.timeout = spec, target, timeout
        self.interval = spec.connections / spec.rate  # seconds between two sends of one slot
        self.next_kind = kind_chooser([kind.weight for kind in target.kinds])
        self.histogram = new_histogram()
        self.kind_histograms = [new_histogram() for _ in target.kinds]
        self.kind_errors = [0 for _ in target.kinds]
        self.requests = self.errors = self.late = 0
        self.start = time.perf_counter()
        self.deadline = self.start + spec.duration  # no send is intended at or after this
        self.give_up = self.deadline + timeout  # sends still waiting to leave then count as errors

    async def slot(self, index: int) -> None:
        """Send this slot's share of the schedule over one connection (reopened when it closes)."""
        loop = asyncio.get_running_loop()
        due = self.start + index / cast(float, self.spec.rate)
        exchange: _Exchange | None = None
        try:
            while due < self.deadline:
                now = time.perf_counter()
                if now >= self.give_up:
                    self.errors += math.ceil((self.deadline - due) / self.interval)  # never sent
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > LATE_SLACK:
                    self.late += 1
                kind = self.next_kind()
                try:
                    async with asyncio.timeout(self.timeout):
                        if exchange is None or not exchange.open:
                            _, protocol = await loop.create_connection(
                                _Exchange,
                                self.target.host,
                                self.target.port,
                                ssl=self.target.ssl,
                                server_hostname=self.target.host if self.target.ssl else None,
                            )
                            exchange = cast(_Exchange, protocol)
                        status, answered = await exchange.request(self.target.requests[kind])
                except (OSError, ValueError, TimeoutError):
                    self.errors += 1
                    if exchange is not None:
                        exchange.close()
                else:
                    self._record(kind, status, answered - due)
                due += self.interval
        finally:
            if exchange is not None:
                exchange.close()

    def _record(self, kind: int, status: int, latency: float) -> None:
        microseconds = max(1, round(latency * 1_000_000))
        self.histogram.record_value(microseconds)
        self.kind_histograms[kind].record_value(microseconds)
        self.requests += 1
        if not self.target.kinds[kind].correct(status):
            self.errors += 1
            self.kind_errors[kind] += 1

    def part(self, *, cpu: float, waited: float) -> OpenLoopPart:
        """What this run measured, mergeable with other processes' parts of the same run."""
        return OpenLoopPart(
            requests=self.requests, errors=self.errors, late=self.late, kind_errors=tuple(self.kind_errors),
            kind_histograms=tuple(histogram.encode() for histogram in self.kind_histograms), cpu=cpu, waited=waited,
        )  # fmt: skip

    def result(self, client: str, *, cpu: float, waited: float) -> LoadResult:
        return open_loop_result(client, self.spec, self.target, [self.part(cpu=cpu, waited=waited)])


@dataclass(frozen=True)
class OpenLoopPart:
    """What one process measured of an open-loop run: counts and its per-kind HDR histograms (encoded), which
    add up exactly into the histograms of the whole run."""

    requests: int
    errors: int
    late: int
    kind_errors: tuple[int, ...]
    kind_histograms: tuple[bytes, ...]
    cpu: float  # seconds of CPU this process used
    waited: float  # seconds it was runnable but waiting for a CPU


def open_loop_result(client: str, spec: LoadSpec, target: Target, parts: list[OpenLoopPart]) -> LoadResult:
    """One result from the parts of an open-loop run: counts summed, histograms added (HDR: exact, bucket by
    bucket)."""
    from hdrh.histogram import HdrHistogram

    duration = spec.duration
    whole, kind_histograms = new_histogram(), []
    for kind in range(len(target.kinds)):
        histogram = new_histogram()
        for part in parts:
            histogram.add(HdrHistogram.decode(part.kind_histograms[kind]))
        whole.add(histogram)
        kind_histograms.append(histogram)
    kinds = tuple(
        KindResult(kind.name, histogram.get_total_count(), sum(part.kind_errors[index] for part in parts),
                   _ms(histogram, 50), _ms(histogram, 99))
        for index, (kind, histogram) in enumerate(zip(target.kinds, kind_histograms, strict=True))
    )  # fmt: skip
    requests = sum(part.requests for part in parts)
    return LoadResult(
        client=client,
        requests=requests,
        errors=sum(part.errors for part in parts),
        duration=duration,
        rps=requests / duration,
        p50_ms=_ms(whole, 50),
        p90_ms=_ms(whole, 90),
        p99_ms=_ms(whole, 99),
        p999_ms=_ms(whole, 99.9),
        max_ms=whole.get_max_value() / 1000 if requests else math.nan,
        client_cpu=sum(part.cpu for part in parts) / duration,
        client_waited=sum(part.waited for part in parts) / duration,
        client_threads=len(parts),
        kinds=kinds,
        late_sends=sum(part.late for part in parts),
        rate=spec.rate,
        process_loads=tuple((part.cpu + part.waited) / duration for part in parts) if len(parts) > 1 else (),
    )


def _ms(histogram: HdrHistogram, percentile: float) -> float:
    if not histogram.get_total_count():
        return math.nan
    return histogram.get_value_at_percentile(percentile) / 1000


async def run_open_loop(
    spec: LoadSpec, target: Target, *, timeout: float, on_progress: ProgressCallback | None
) -> OpenLoopPart:
    """Drive ``spec`` open loop on the running event loop."""
    cpu_start, waited_start = time.process_time(), run_queue_wait()
    run = OpenLoopRun(spec, target, timeout)
    slots = [asyncio.create_task(run.slot(index)) for index in range(spec.connections)]
    pending: set[asyncio.Task[None]] = set(slots)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=PROGRESS_INTERVAL)
        if on_progress is not None:
            on_progress(min(time.perf_counter() - run.start, spec.duration), run.requests)
    for slot in slots:
        slot.result()  # a bug in a slot is raised, not lost
    return run.part(cpu=time.process_time() - cpu_start, waited=run_queue_wait() - waited_start)
