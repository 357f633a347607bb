"""The built-in demo app: a dependency-free raw ASGI application.

Routes: ``/`` plaintext, ``/json``, ``/health``, ``/loop`` (server, pid and the running loop's class,
the proof that a worker runs the loop that was asked for; also HTTP version, scheme and client) and
``/sleep?seconds=N`` (a slow request, for shutdown drills; at most 60 s), ``/io?ms=N`` (awaits N ms),
``/cpu?us=N`` (burns N us of Python) and ``POST /upload`` (reads the whole body, answers its size and
SHA-256); a websocket at ``/ws`` echoes every message. The ``bench/workload`` presets use them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs

from pyfly_hydra.worker.types import Receive, Scope, Send

# The server serving this process (set by the runner); not PYFLY_HYDRA_SERVER, which chooses the server group.
SERVER_ENV = "PYFLY_HYDRA_RUNNING_SERVER"
MAX_SLEEP_SECONDS = 60.0
MAX_CPU_MICROSECONDS = 1_000_000
PLAINTEXT = b"Hello, world!"
TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
JSON = [(b"content-type", b"application/json")]


def running_loop_name() -> str:
    """``module.Class`` of the event loop running this coroutine, e.g. ``uvloop.Loop``; ``trio`` under trio."""
    try:
        loop_type = type(asyncio.get_running_loop())
    except RuntimeError:  # no asyncio loop: hypercorn's trio worker (loop=trio)
        return "trio"
    return f"{loop_type.__module__}.{loop_type.__qualname__}"


async def _wait(seconds: float) -> None:
    """Sleep on whichever library runs this coroutine (asyncio, or trio with loop=trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        await trio.sleep(seconds)
        return
    await asyncio.sleep(seconds)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + length})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, payload: dict[str, Any], status: int = 200) -> None:
    await _respond(send, status, json.dumps(payload).encode(), JSON)


async def _sleep(scope: Scope, send: Send) -> None:
    query = parse_qs(scope.get("query_string", b"").decode())
    try:
        seconds = min(float(query.get("seconds", ["1"])[0]), MAX_SLEEP_SECONDS)
    except ValueError:
        await _json(send, {"error": "seconds must be a number"}, status=400)
        return
    await _wait(seconds)
    await _json(send, {"slept": seconds, "pid": os.getpid()})


def _query_number(scope: Scope, name: str, default: float, maximum: float) -> float | None:
    """``?name=N`` as a number in 0..maximum, or None when it is not one."""
    query = parse_qs(scope.get("query_string", b"").decode())
    try:
        value = float(query.get(name, [str(default)])[0])
    except ValueError:
        return None
    return value if 0 <= value <= maximum else None


async def _io(scope: Scope, send: Send) -> None:
    """Await ``?ms=N`` milliseconds (a database or API call), then answer."""
    milliseconds = _query_number(scope, "ms", 10, MAX_SLEEP_SECONDS * 1000)
    if milliseconds is None:
        await _json(send, {"error": f"ms must be a number 0..{MAX_SLEEP_SECONDS * 1000:.0f}"}, status=400)
        return
    await _wait(milliseconds / 1000)
    await _json(send, {"waited_ms": milliseconds})


async def _cpu(scope: Scope, send: Send) -> None:
    """Burn ``?us=N`` microseconds of Python in this worker (holding the GIL), then answer."""
    microseconds = _query_number(scope, "us", 200, MAX_CPU_MICROSECONDS)
    if microseconds is None:
        await _json(send, {"error": f"us must be a number 0..{MAX_CPU_MICROSECONDS}"}, status=400)
        return
    deadline, spins = time.perf_counter() + microseconds / 1e6, 0
    while time.perf_counter() < deadline:
        spins += 1
    await _json(send, {"burned_us": microseconds, "spins": spins})


async def _upload(receive: Receive, send: Send) -> None:
    """Read the whole request body, answer its size and SHA-256."""
    digest, size, more = hashlib.sha256(), 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        digest.update(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
    await _json(send, {"size": size, "sha256": digest.hexdigest()})


async def _websocket_echo(receive: Receive, send: Send) -> None:
    """Accept, then send every message back as it came, until the client leaves."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The demo ASGI application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        if scope["path"].endswith("/ws"):
            await _websocket_echo(receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    if scope["type"] != "http":
        return
    path, root_path = scope["path"], scope.get("root_path", "")
    if root_path and path.startswith(root_path):  # the path includes the prefix (pyfly_hydra.worker.root_path)
        path = path[len(root_path) :] or "/"
    if path == "/":
        await _respond(send, 200, PLAINTEXT, TEXT)
    elif path == "/json":
        await _json(send, {"message": "Hello, world!"})
    elif path == "/health":
        await _json(send, {"status": "ok"})
    elif path == "/loop":
        await _json(
            send,
            {
                "server": os.environ.get(SERVER_ENV, "unknown"),
                "pid": os.getpid(),
                "loop": running_loop_name(),
                "http_version": scope.get("http_version"),
                "scheme": scope.get("scheme"),
                "client": (scope.get("client") or [None])[0],
                "root_path": scope.get("root_path", ""),
            },
        )
    elif path == "/sleep":
        await _sleep(scope, send)
    elif path == "/io":
        await _io(scope, send)
    elif path == "/cpu":
        await _cpu(scope, send)
    elif path == "/upload" and scope["method"] == "POST":
        await _upload(receive, send)
    else:
        await _respond(send, 404, b"Not Found", TEXT)
