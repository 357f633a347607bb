"""What each layer pyfly-hydra adds inside a worker costs a request, in microseconds, measured in one process.

    .venv/bin/python benchmarks/layer_cost.py [--requests 50000] [--rounds 5]
    (or: make bench-layer-cost ARGS="...")

uvicorn's httptools protocol is fed a small GET (and, for the body timeout, a POST with a 16-byte body) over an
in-memory transport, answered by a two-message ASGI app, on uvloop: no sockets, no load generator, no other
process, so a fraction of a microsecond shows. Each row is the median over ``--rounds`` interleaved rounds of
(its stack) minus (the row it is set against) per request: pyfly-hydra's protocol against uvicorn's, each layer
against pyfly-hydra's protocol with the bare app. What a whole server loses is
``benchmarks/compare.py``'s to say (a request through a real socket costs 15-25 us here); this says which layer
it is. Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import uvloop
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from pyfly_hydra.servers.uvicorn.protocol import IdleClosingHTTPProtocol
from pyfly_hydra.worker.access_log import AccessLog, AccessLogFormat
from pyfly_hydra.worker.app import HTTPFirst
from pyfly_hydra.worker.drain import GoingAway
from pyfly_hydra.worker.exchange import HTTPExchange
from pyfly_hydra.worker.lifespan import LifespanGuard
from pyfly_hydra.worker.metrics import WorkerMetrics
from pyfly_hydra.worker.proxy_headers import ProxyHeadersMiddleware, TrustedProxies
from pyfly_hydra.worker.root_path import RootPath

GET = b"GET /api/items HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
POST = b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 16\r\n\r\n0123456789abcdef"
BODY = b"Hello, world!"


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        await receive()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


class Transport(asyncio.Transport):
    """Resolves ``answered`` when the response body has been written."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: asyncio.Future[None] | None = None

    def write(self, data: Any) -> None:
        if self.answered is not None and not self.answered.done() and bytes(data).endswith(BODY):
            self.answered.set_result(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_protocol(self) -> Any:
        return self.protocol

    protocol: Any = None


async def _serve(protocol_class: type, app: Any, request: bytes, count: int) -> None:
    loop = asyncio.get_running_loop()
    config = Config(app=app, interface="asgi3", proxy_headers=False, access_log=False, lifespan="off", log_config=None)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Transport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    for _ in range(count):
        transport.answered = loop.create_future()
        protocol.data_received(request)
        await transport.answered
    protocol.connection_lost(None)


def per_request_us(protocol_class: type, app: Any, request: bytes, count: int) -> float:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(protocol_class, app, request, count // 10))  # warm up
        started = time.perf_counter()
        runner.run(_serve(protocol_class, app, request, count))
        return (time.perf_counter() - started) / count * 1e6


UVICORN_GET, OURS_GET, OURS_POST = "uvicorn's protocol, bare app", "pyfly-hydra's protocol, bare app", "... POST"


def stacks(metrics_dir: str) -> dict[str, tuple[str | None, type, Callable[[], Any], bytes]]:
    """Each row: the row it is measured against (None: a baseline), the protocol, the app (built fresh per round),
    the request."""
    ours = IdleClosingHTTPProtocol
    access_log = AccessLog(AccessLogFormat.parse(None))
    return {
        UVICORN_GET: (None, HttpToolsProtocol, lambda: hello, GET),
        OURS_GET: (UVICORN_GET, ours, lambda: hello, GET),
        OURS_POST: (None, ours, lambda: hello, POST),
        "GoingAway (websockets closed with 1001)": (OURS_GET, ours, lambda: GoingAway(hello), GET),
        "LifespanGuard (server.lifespan)": (OURS_GET, ours, lambda: LifespanGuard(hello, mode="auto"), GET),
        "HTTPFirst in front of both": (
            OURS_GET, ours, lambda: HTTPFirst(http=hello, other=LifespanGuard(GoingAway(hello), mode="auto")), GET,
        ),
        "HTTPExchange, body timeout (server.body_timeout), GET": (
            OURS_GET, ours, lambda: HTTPExchange(hello, body_timeout=60), GET,
        ),
        "HTTPExchange, body timeout, POST with a body": (
            OURS_POST, ours, lambda: HTTPExchange(hello, body_timeout=60), POST,
        ),
        "HTTPExchange, + metrics (server.metrics)": (
            OURS_GET, ours, lambda: HTTPExchange(hello, body_timeout=60, metrics=WorkerMetrics(metrics_dir)), GET,
        ),
        "HTTPExchange, + request id (server.request_id)": (
            OURS_GET, ours, lambda: HTTPExchange(hello, body_timeout=60, request_id=True), GET,
        ),
        "HTTPExchange, + access log (server.access_log; a handler that drops the line)": (
            OURS_GET, ours, lambda: HTTPExchange(hello, body_timeout=60, access_log=access_log), GET,
        ),
        "ProxyHeadersMiddleware (server.proxy_headers)": (
            OURS_GET, ours, lambda: ProxyHeadersMiddleware(hello, TrustedProxies("127.0.0.1")), GET,
        ),
        "RootPath (server.root_path)": (OURS_GET, ours, lambda: RootPath(hello, root_path="/api"), GET),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000, help="requests per stack per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians reported")
    args = parser.parse_args()
    access = logging.getLogger("pyfly_hydra.access")  # each line formatted and handed to a handler that drops it
    access.setLevel(logging.INFO)
    access.propagate = False
    access.addHandler(logging.NullHandler())
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="pyfly-layer-cost-", dir=shm) as directory:
        rows = stacks(directory)
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, (_, protocol, app, request) in rows.items():
                times[name].append(per_request_us(protocol, app(), request, args.requests))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{UVICORN_GET}: {medians[UVICORN_GET]:.2f} us a request (uvloop, in one process)\n")
    print("| layer | against | us added per request | middle half of rounds |")
    print("|---|---|---:|---:|")
    for name, (against, *_) in rows.items():
        if against is None:
            continue
        added = [mine - theirs for mine, theirs in zip(times[name], times[against], strict=True)]
        first, _, third = statistics.quantiles(added, n=4) if len(added) > 1 else (added[0],) * 3
        print(f"| {name} | {against} | {statistics.median(added):+.2f} | {first:+.2f} to {third:+.2f} |")


if __name__ == "__main__":
    main()
