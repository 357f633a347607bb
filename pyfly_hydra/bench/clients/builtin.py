"""The embedded load client: HTTP/1.1 keep-alive connections on asyncio (uvloop when importable).

Closed loop (the default): each connection keeps exactly one request in flight: send, read the whole response,
record its latency, send the next. Open loop (``LoadSpec.rate``): see :mod:`.open_loop`. One Python thread feeds
about one core's worth of load: ``processes`` runs it in several processes (:mod:`.processes`), each measuring a
part of the connections, their counts and latencies merged whole.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, cast

from pyfly_hydra.bench.clients.base import (
    BUILTIN_SATURATION_SHARE,
    PROGRESS_INTERVAL,
    KindResult,
    LoadResult,
    LoadSpec,
    ProgressCallback,
    percentile,
    run_queue_wait,
)
from pyfly_hydra.bench.clients.http1 import ResponseParser, Target, kind_chooser
from pyfly_hydra.bench.clients.open_loop import OpenLoopPart, open_loop_result, run_open_loop
from pyfly_hydra.bench.workload import Workload, wrong_status

try:
    import uvloop
except ImportError:  # pragma: no cover - depends on the platform
    uvloop = None


DEFAULT_TIMEOUT = 2.0  # seconds to connect or to get a whole response, as wrk's default
RECONNECT_BACKOFF = 0.05  # seconds to wait after a failed connection, so a dead server doesn't spin


class _Run:
    """The state one load run shares between its connections."""

    def __init__(self, spec: LoadSpec, target: Target, loop: asyncio.AbstractEventLoop) -> None:
        self.requests_bytes = target.requests
        self.expects = [kind.expect for kind in target.kinds]
        self.next_kind = kind_chooser([kind.weight for kind in target.kinds])
        self.cap = spec.requests
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.kind_latencies: list[list[float]] = [[] for _ in target.kinds]
        self.kind_errors = [0 for _ in target.kinds]
        self.connections: set[_LoadProtocol] = set()
        self.over = False
        self.finished = loop.create_future()
        self.start = time.perf_counter()
        self.deadline = self.start + spec.duration
        self.end = self.deadline

    def stop(self, end: float) -> None:
        """End the run at ``end`` (perf_counter seconds); later responses are not counted."""
        if not self.over:
            self.over = True
            self.end = min(end, self.deadline)
            self.finished.set_result(None)

    def expire(self, now: float, timeout: float) -> None:
        """Abort the connections whose request has waited longer than ``timeout``."""
        for connection in list(self.connections):
            if connection.sent and now - connection.sent > timeout:
                connection.fail()


class _LoadProtocol(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time."""

    def __init__(self, run: _Run, closed: asyncio.Future[bool]) -> None:
        self.run = run
        self.closed = closed  # result: True when the connection ended in an error
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.sent = 0.0  # perf_counter() when the request in flight was sent; 0.0 when none is
        self.kind = 0  # which request kind is in flight
        self.failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register the connection and send its first request."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports aren't asyncio.Transport subclasses
        self.run.connections.add(self)
        self.sent = time.perf_counter()
        self._send()

    def _send(self) -> None:
        run = self.run
        self.kind = run.next_kind()
        cast(asyncio.Transport, self.transport).write(run.requests_bytes[self.kind])

    def data_received(self, data: bytes) -> None:
        """Parse; on a complete response, record it and send the next request."""
        try:
            done = self.parser.feed(data)
        except ValueError:
            self.fail()
            return
        if done and self._record(done):
            transport = cast(asyncio.Transport, self.transport)
            if self.parser.keep_alive:
                self._send()
            else:  # the server closes this connection: the driver opens a new one
                self.sent = 0.0
                transport.close()

    def eof_received(self) -> bool:
        """The server closed its side: a body framed by the connection's end is complete."""
        if self.parser.feed_eof() and self._record(1):
            self.sent = 0.0
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Count an error when a request was in flight, then let the driver reconnect."""
        run = self.run
        run.connections.discard(self)
        if self.sent and not run.over and not self.failed:
            self.failed = True
            run.errors += 1
        self.sent = 0.0
        if not self.closed.done():
            self.closed.set_result(self.failed)

    def fail(self) -> None:
        """Count an error and drop the connection (timeout, malformed or unsolicited response)."""
        if not self.failed and not self.run.over:
            self.failed = True
            self.run.errors += 1
        self.sent = 0.0
        if self.transport is not None:
            self.transport.abort()

    def _record(self, done: int) -> bool:
        """Count the response(s) just completed; True when the next request is due (``sent`` is then set)."""
        run = self.run
        now = time.perf_counter()
        statuses = self.parser.statuses
        if run.over or now >= run.deadline:  # the run is over: abandon, don't count
            statuses.clear()
            self.sent = 0.0
            run.stop(now)
            return False
        if done > 1 or self.sent == 0.0:  # more responses than requests
            statuses.clear()
            self.fail()
            return False
        latency, kind, status = now - self.sent, self.kind, statuses[0]
        run.latencies.append(latency)
        run.kind_latencies[kind].append(latency)
        run.requests += 1
        expect = run.expects[kind]
        if wrong_status(status, expect):
            run.errors += 1
            run.kind_errors[kind] += 1
        statuses.clear()
        if run.cap is not None and run.requests >= run.cap:
            self.sent = 0.0
            run.stop(now)
            return False
        self.sent = now
        return True


@dataclass(frozen=True)
class ClosedLoopPart:
    """What one process measured of a closed-loop run: counts, and every latency kept (seconds, per kind), so the
    parts of a run in several processes merge exactly."""

    requests: int
    errors: int
    start: float  # perf_counter() seconds: the system's monotonic clock, the same in every process
    end: float
    kind_latencies: tuple[array[float], ...]
    kind_errors: tuple[int, ...]
    cpu: float  # seconds of CPU this process used
    waited: float  # seconds it was runnable but waiting for a CPU


class BuiltinClient:
    """The embedded HTTP/1.1 load client: asyncio (uvloop when importable) in the calling thread, or in
    ``processes`` processes (one per CPU of ``cpus`` when given).

    ``timeout`` bounds connecting and each response; a late response is detected within ``timeout`` + 0.5 s.
    """

    name: ClassVar[str] = "builtin"
    http2: ClassVar[bool] = False
    caps_requests: ClassVar[bool] = True
    open_loop: ClassVar[bool] = True
    reconnects: ClassVar[bool] = True

    def __init__(
        self, timeout: float = DEFAULT_TIMEOUT, *, processes: int = 1, cpus: frozenset[int] | None = None
    ) -> None:
        self.timeout, self.processes, self.cpus = timeout, processes, cpus

    def available(self) -> bool:
        """Always: it needs nothing but Python."""
        return True

    def workload_refusal(self, workload: Workload) -> str | None:
        """None: it sends any workload and checks each answer against its own request's expected status."""
        return None

    def run(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> LoadResult:
        """Drive the load; ``on_progress(elapsed, requests)`` is called about every 0.5 s (in one process; at the end
        in several)."""
        if min(self.processes, spec.connections) > 1:
            from pyfly_hydra.bench.clients.processes import measure_in_processes

            parts = measure_in_processes(spec, processes=self.processes, cpus=self.cpus, timeout=self.timeout)
            result = self.result(spec, parts)
            if on_progress is not None:
                on_progress(result.duration, result.requests)
            return result
        return self.result(spec, [self.measure(spec, on_progress)])

    def measure(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> ClosedLoopPart | OpenLoopPart:
        """Drive ``spec`` on a fresh event loop in this thread: what it measured, mergeable with other parts."""
        factory = uvloop.new_event_loop if uvloop is not None else None
        with asyncio.Runner(loop_factory=factory) as runner:
            target = Target(spec.url, spec.workload)
            if spec.rate is not None:
                return runner.run(run_open_loop(spec, target, timeout=self.timeout, on_progress=on_progress))
            return runner.run(self._main(spec, target, on_progress))

    def result(self, spec: LoadSpec, parts: list[ClosedLoopPart] | list[OpenLoopPart]) -> LoadResult:
        """The run's result from the parts its processes measured."""
        target = Target(spec.url, spec.workload)
        if spec.rate is not None:
            return open_loop_result(self.name, spec, target, cast(list[OpenLoopPart], parts))
        return closed_loop_result(self.name, target, cast(list[ClosedLoopPart], parts))

    async def _main(self, spec: LoadSpec, target: Target, on_progress: ProgressCallback | None) -> ClosedLoopPart:
        loop = asyncio.get_running_loop()
        cpu_start, waited_start = time.process_time(), run_queue_wait()
        run = _Run(spec, target, loop)
        drivers = [asyncio.create_task(self._connection(run, target)) for _ in range(spec.connections)]
        while not run.over:
            timeout = min(PROGRESS_INTERVAL, run.deadline - time.perf_counter())
            await asyncio.wait([run.finished], timeout=max(0.0, timeout))
            now = time.perf_counter()
            if now >= run.deadline:
                run.stop(now)
            run.expire(now, self.timeout)
            if on_progress is not None:
                on_progress(min(now, run.end) - run.start, run.requests)
        await _shutdown(run, drivers)
        return ClosedLoopPart(
            requests=run.requests, errors=run.errors, start=run.start, end=run.end,
            kind_latencies=tuple(array("d", latencies) for latencies in run.kind_latencies),
            kind_errors=tuple(run.kind_errors),
            cpu=time.process_time() - cpu_start, waited=run_queue_wait() - waited_start,
        )  # fmt: skip

    async def _connection(self, run: _Run, target: Target) -> None:
        """Keep one connection open until the run is over, reconnecting (with a backoff after errors)."""
        loop = asyncio.get_running_loop()
        while not run.over:
            closed: asyncio.Future[bool] = loop.create_future()
            try:
                async with asyncio.timeout(self.timeout):
                    await loop.create_connection(
                        partial(_LoadProtocol, run, closed),
                        target.host,
                        target.port,
                        ssl=target.ssl,
                        server_hostname=target.host if target.ssl else None,
                    )
            except OSError:  # refused, reset, unreachable, TLS failure, TimeoutError
                if not run.over:
                    run.errors += 1
                    await asyncio.sleep(RECONNECT_BACKOFF)
                continue
            if await closed and not run.over:
                await asyncio.sleep(RECONNECT_BACKOFF)


async def _shutdown(run: _Run, drivers: list[asyncio.Task[None]]) -> None:
    """Cancel the connection drivers and drop every open connection."""
    for driver in drivers:
        driver.cancel()
    for connection in list(run.connections):
        if connection.transport is not None:
            connection.transport.abort()
    await asyncio.gather(*drivers, return_exceptions=True)


def closed_loop_result(client: str, target: Target, parts: list[ClosedLoopPart]) -> LoadResult:
    """One result from the parts of a closed-loop run: counts summed, latencies pooled whole (so the percentiles
    are those of every response), the run from its first start to its last end."""
    duration = max(part.end for part in parts) - min(part.start for part in parts)
    kind_latencies = [
        sorted(value for part in parts for value in part.kind_latencies[kind]) for kind in range(len(target.kinds))
    ]
    latencies = sorted(value for values in kind_latencies for value in values)
    requests = sum(part.requests for part in parts)
    kinds = []
    for kind, ordered in zip(target.kinds, kind_latencies, strict=True):
        errors = sum(part.kind_errors[len(kinds)] for part in parts)
        kinds.append(
            KindResult(
                kind.name, len(ordered), errors, percentile(ordered, 0.5) * 1000, percentile(ordered, 0.99) * 1000
            )
        )
    return LoadResult(
        client=client,
        requests=requests,
        errors=sum(part.errors for part in parts),
        duration=duration,
        rps=requests / duration if duration > 0 else 0.0,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p90_ms=percentile(latencies, 0.9) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        p999_ms=percentile(latencies, 0.999) * 1000,
        max_ms=latencies[-1] * 1000 if latencies else math.nan,
        client_cpu=sum(part.cpu for part in parts) / duration if duration > 0 else 0.0,
        client_waited=sum(part.waited for part in parts) / duration if duration > 0 else 0.0,
        client_threads=len(parts),
        saturation_share=BUILTIN_SATURATION_SHARE,
        kinds=tuple(kinds),
        process_loads=_process_loads(parts, duration),
    )


def _process_loads(parts: list[ClosedLoopPart], duration: float) -> tuple[float, ...]:
    """Each process's CPU, used or waited for, in cores: any one at the saturation share limits the run."""
    if len(parts) < 2 or duration <= 0:
        return ()
    return tuple((part.cpu + part.waited) / duration for part in parts)
