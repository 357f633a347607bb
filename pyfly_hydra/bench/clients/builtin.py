"""The embedded load client: HTTP/1.1 keep-alive connections on asyncio (uvloop when importable).

Closed loop (the default): each connection keeps exactly one request in flight: send, read the whole response,
record its latency, send the next. Open loop (``LoadSpec.rate``): see :mod:`.open_loop`.
"""

from __future__ import annotations

import asyncio
import math
import time
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
from pyfly_hydra.bench.clients.open_loop import run_open_loop
from pyfly_hydra.bench.workload import Workload

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
        if (status >= 400) if expect is None else (status != expect):
            run.errors += 1
            run.kind_errors[kind] += 1
        statuses.clear()
        if run.cap is not None and run.requests >= run.cap:
            self.sent = 0.0
            run.stop(now)
            return False
        self.sent = now
        return True


class BuiltinClient:
    """The embedded HTTP/1.1 load client: asyncio (uvloop when importable) in the calling thread.

    ``timeout`` bounds connecting and each response; a late response is detected within ``timeout`` + 0.5 s.
    """

    name: ClassVar[str] = "builtin"
    http2: ClassVar[bool] = False
    caps_requests: ClassVar[bool] = True
    open_loop: ClassVar[bool] = True
    reconnects: ClassVar[bool] = True

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    def available(self) -> bool:
        """Always: it needs nothing but Python."""
        return True

    def workload_refusal(self, workload: Workload) -> str | None:
        """None: it sends any workload and checks each answer against its own request's expected status."""
        return None

    def run(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> LoadResult:
        """Drive the load on a fresh event loop; ``on_progress(elapsed, requests)`` is called about every 0.5 s."""
        factory = uvloop.new_event_loop if uvloop is not None else None
        with asyncio.Runner(loop_factory=factory) as runner:
            if spec.rate is not None:
                target = Target(spec.url, spec.workload)
                return runner.run(
                    run_open_loop(spec, target, timeout=self.timeout, client=self.name, on_progress=on_progress)
                )
            return runner.run(self._main(spec, on_progress))

    async def _main(self, spec: LoadSpec, on_progress: ProgressCallback | None) -> LoadResult:
        loop = asyncio.get_running_loop()
        target = Target(spec.url, spec.workload)
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
        cpu, waited = time.process_time() - cpu_start, run_queue_wait() - waited_start
        return _result(self.name, run, target, cpu=cpu, waited=waited)

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


def _result(client: str, run: _Run, target: Target, *, cpu: float, waited: float) -> LoadResult:
    duration = run.end - run.start
    latencies = sorted(run.latencies)
    kinds = []
    for kind, kind_latencies, errors in zip(target.kinds, run.kind_latencies, run.kind_errors, strict=True):
        ordered = sorted(kind_latencies)
        p50, p99 = percentile(ordered, 0.5) * 1000, percentile(ordered, 0.99) * 1000
        kinds.append(KindResult(kind.name, len(ordered), errors, p50, p99))
    return LoadResult(
        client=client,
        requests=run.requests,
        errors=run.errors,
        duration=duration,
        rps=run.requests / duration if duration > 0 else 0.0,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p90_ms=percentile(latencies, 0.9) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        p999_ms=percentile(latencies, 0.999) * 1000,
        max_ms=latencies[-1] * 1000 if latencies else math.nan,
        client_cpu=cpu / duration if duration > 0 else 0.0,
        client_waited=waited / duration if duration > 0 else 0.0,
        client_threads=1,
        saturation_share=BUILTIN_SATURATION_SHARE,
        kinds=tuple(kinds),
    )
