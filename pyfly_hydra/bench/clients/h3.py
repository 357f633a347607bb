"""The HTTP/3 load client (``server.http=3``): QUIC connections on aioquic, closed loop, in the calling thread.

No other client here speaks HTTP/3: wrk and h2load speak TCP (Debian's h2load is built without QUIC). Each
connection keeps one request in flight: it sends the request on a new stream, reads the whole response, records
its latency, and sends the next; a connection that fails is counted and opened again. The workload's kinds are
sent as they are (method, path, headers, body) and each answer checked against its kind's expected status, as the
builtin HTTP/1.1 client does. aioquic is pure Python and this is one thread: on any machine it runs out of CPU
long before a server does, and the result says so (``client saturated``, as for the builtin client), so a figure
it gives is the HTTP/3 rate this client could drive, the server's only when it is not saturated.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import ssl
import time
from array import array
from typing import Any, ClassVar

from pyfly_hydra.bench.clients.base import PROGRESS_INTERVAL, LoadResult, LoadSpec, ProgressCallback, run_queue_wait
from pyfly_hydra.bench.clients.builtin import DEFAULT_TIMEOUT, RECONNECT_BACKOFF, ClosedLoopPart, closed_loop_result
from pyfly_hydra.bench.clients.http1 import USER_AGENT, Target, kind_chooser
from pyfly_hydra.bench.workload import RequestKind, Workload, wrong_status

try:
    import uvloop
except ImportError:  # pragma: no cover - depends on the platform
    uvloop = None


class _Measured:
    """What the run's connections count, shared."""

    def __init__(self, spec: LoadSpec, target: Target) -> None:
        self.kinds = target.kinds
        self.next_kind = kind_chooser([kind.weight for kind in target.kinds])
        self.cap = spec.requests
        self.requests = self.errors = 0
        self.kind_latencies: list[array[float]] = [array("d") for _ in target.kinds]
        self.kind_errors = [0 for _ in target.kinds]
        self.start = time.perf_counter()
        self.deadline = self.end = self.start + spec.duration
        self.over = False

    def record(self, kind: int, status: int, latency: float, now: float) -> None:
        if self.over or now >= self.deadline:
            self.stop(now)
            return
        self.requests += 1
        self.kind_latencies[kind].append(latency)
        expect = self.kinds[kind].expect
        if wrong_status(status, expect):
            self.errors += 1
            self.kind_errors[kind] += 1
        if self.cap is not None and self.requests >= self.cap:
            self.stop(now)

    def failed(self) -> None:
        if not self.over:
            self.errors += 1

    def stop(self, now: float) -> None:
        if not self.over:
            self.over = True
            self.end = min(now, self.deadline)


def _protocol_class() -> type[Any]:
    """The QUIC connection protocol, defined where aioquic is imported (the ``h3`` extra)."""
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.events import ConnectionTerminated, QuicEvent

    class LoadConnection(QuicConnectionProtocol):
        """One QUIC connection; ``request`` sends one request and returns its status once its answer has ended."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.pending: dict[int, tuple[asyncio.Future[int], list[int]]] = {}

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, ConnectionTerminated):
                for future, _ in self.pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError(event.reason_phrase or "connection closed"))
                self.pending.clear()
                return
            for answer in self.h3.handle_event(event):
                if not isinstance(answer, HeadersReceived | DataReceived) or answer.stream_id not in self.pending:
                    continue
                future, status = self.pending[answer.stream_id]
                if isinstance(answer, HeadersReceived):
                    status += [int(value) for name, value in answer.headers if name == b":status"]
                if answer.stream_ended:
                    del self.pending[answer.stream_id]
                    if not future.done():
                        future.set_result(status[0] if status else 0)

        async def request(self, kind: RequestKind, authority: bytes) -> int:
            stream = self._quic.get_next_available_stream_id()
            headers = [
                (b":method", kind.method.encode()), (b":scheme", b"https"), (b":authority", authority),
                (b":path", kind.path.encode()), (b"user-agent", USER_AGENT.encode()),
                *((name.lower().encode(), value.encode()) for name, value in kind.headers),
            ]  # fmt: skip
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.pending[stream] = (future, [])
            self.h3.send_headers(stream, headers, end_stream=not kind.body)
            if kind.body:
                self.h3.send_data(stream, kind.body, end_stream=True)
            self.transmit()
            return await future

    return LoadConnection


class H3Client:
    """The embedded HTTP/3 load client (aioquic), closed loop, one thread."""

    name: ClassVar[str] = "h3"
    http2: ClassVar[bool] = False
    caps_requests: ClassVar[bool] = True
    open_loop: ClassVar[bool] = False
    reconnects: ClassVar[bool] = True

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    def available(self) -> bool:
        """When aioquic is installed (``pip install 'pyfly-hydra[h3]'``)."""
        return importlib.util.find_spec("aioquic") is not None

    def workload_refusal(self, workload: Workload) -> str | None:
        """None: it sends any workload and checks each answer, as the builtin client does."""
        return None

    def run(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> LoadResult:
        """Drive ``spec`` over HTTP/3 on a fresh event loop in this thread."""
        target = Target(spec.url, spec.workload)
        logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic's lines for every connection
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop is not None else None) as runner:
            part = runner.run(self._main(spec, target, on_progress))
        return closed_loop_result(self.name, target, [part])

    async def _main(self, spec: LoadSpec, target: Target, on_progress: ProgressCallback | None) -> ClosedLoopPart:
        cpu_start, waited_start = time.process_time(), run_queue_wait()
        measured = _Measured(spec, target)
        drivers = [asyncio.create_task(self._connection(measured, target)) for _ in range(spec.connections)]
        while not measured.over:
            await asyncio.sleep(max(0.0, min(PROGRESS_INTERVAL, measured.deadline - time.perf_counter())))
            now = time.perf_counter()
            if now >= measured.deadline:
                measured.stop(now)
            if on_progress is not None:
                on_progress(min(now, measured.end) - measured.start, measured.requests)
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        return ClosedLoopPart(
            requests=measured.requests, errors=measured.errors, start=measured.start, end=measured.end,
            kind_latencies=tuple(measured.kind_latencies), kind_errors=tuple(measured.kind_errors),
            cpu=time.process_time() - cpu_start, waited=run_queue_wait() - waited_start,
        )  # fmt: skip

    async def _connection(self, measured: _Measured, target: Target) -> None:
        """Keep one QUIC connection busy until the run is over, opening it again after a failure."""
        from aioquic.asyncio.client import connect
        from aioquic.h3.connection import H3_ALPN
        from aioquic.quic.configuration import QuicConfiguration

        configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
        authority = f"{target.host}:{target.port}".encode()
        protocol = _protocol_class()
        while not measured.over:
            async with contextlib.AsyncExitStack() as open_connection:
                try:
                    async with asyncio.timeout(self.timeout):  # the handshake
                        client = await open_connection.enter_async_context(
                            connect(target.host, target.port, configuration=configuration, create_protocol=protocol)
                        )
                    while not measured.over:
                        index, sent = measured.next_kind(), time.perf_counter()
                        async with asyncio.timeout(self.timeout):
                            status = await client.request(measured.kinds[index], authority)
                        now = time.perf_counter()
                        measured.record(index, status, now - sent, now)
                except (ConnectionError, OSError):  # refused, handshake failed, connection lost, answer too late
                    measured.failed()
            if not measured.over:
                await asyncio.sleep(RECONNECT_BACKOFF)
