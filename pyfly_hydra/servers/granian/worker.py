"""What pyfly-hydra adds inside each granian worker: dying with the runner, telling ``worker.drain`` when it
stops, and retiring without losing a request (granian calls ``load`` first thing in every worker).

When a worker stops, granian asks hyper for a graceful shutdown of every connection, and hyper closes an
idle keep-alive connection at once (``src/workers.rs``: ``conn.graceful_shutdown()`` on the worker's stop
signal), racing a client that is sending its next request on it: that request is lost. A worker being
replaced (lifetime, memory) is therefore *retired* first: told with ``RETIRE_SIGNAL``, it answers every
request with ``Connection: close``, so its keep-alive clients move to the other workers, and only once it
holds no connection (or its keep-alive timeout has passed, when granian itself would have closed any idle
one) is it stopped (``servers.granian.server``: ``GroupSignalWorker.terminate``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import weakref
from collections.abc import Awaitable, Callable, Iterable
from types import FrameType
from typing import Any

from pyfly_hydra.worker import drain
from pyfly_hydra.worker.control import die_with_parent
from pyfly_hydra.worker.types import Message, Scope, Send

RETIRE_SIGNAL = signal.SIGUSR1
CONNECTION_CLOSE = (b"connection", b"close")
GOING_AWAY_SECONDS = 1.0  # how long a stopping worker may take to close its open websockets with 1001
GOING_AWAY_POLL = 0.01
_retiring = False
_stop_before_serving = False  # a stop signal reached this worker before granian's own handlers were set
_requests: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()  # this worker's running request tasks


def _retire(signum: int, frame: FrameType | None) -> None:
    global _retiring
    _retiring = True


def stop_before_serving() -> None:
    """Keep a stop signal that reached a forked worker while it still ran its parent's handler (it was
    loading the app): granian's worker handlers, set once the app is loaded, act on it at once. Without
    this a group SIGTERM during start-up was swallowed and the worker went on to serve."""
    global _stop_before_serving
    _stop_before_serving = True


def load(parent_pid: int, loader: Callable[[], Any], interface: str, graceful_timeout: float) -> Any:
    """granian's ``target_loader``: the app, in a worker that dies with ``parent_pid`` and can be retired."""
    if os.getpid() != parent_pid:  # a worker process (not a thread worker of the runner itself)
        die_with_parent(parent_pid)
        signal.signal(RETIRE_SIGNAL, _retire)
        _tell_drain_on_stop(graceful_timeout)
    app = loader()
    return ClosingWhenRetiring(app) if interface == "asgi" else WSGIClosingWhenRetiring(app)


def _tell_drain_on_stop(graceful_timeout: float) -> None:
    """granian's worker stop signal (SIGINT, SIGTERM) tells ``worker.drain`` first, and reaches granian once
    the open websockets have been closed with 1001 (at most ``GOING_AWAY_SECONDS``): granian's Rust side
    drops them without a close frame the moment it stops. Requests still running ``graceful_timeout``
    seconds after the stop are cancelled, so the worker runs its lifespan shutdown and exits before
    granian's supervisor kills it (``workers_kill_timeout`` is set a margin later). granian imports
    ``set_loop_signals`` from ``granian._signals`` when its worker starts, after this loader has run."""
    import granian._signals
    from granian._granian import WorkerSignal

    def going_away_first(loop: Any) -> Any:
        event = WorkerSignal()
        stopping = False

        def stop() -> None:
            nonlocal stopping
            if stopping:
                return
            stopping = True
            drain.started()
            deadline = loop.time() + GOING_AWAY_SECONDS

            def when_closed() -> None:
                if drain.open_websockets() and loop.time() < deadline:
                    loop.call_later(GOING_AWAY_POLL, when_closed)
                else:
                    event.set()

            loop.call_soon(when_closed)
            loop.call_later(graceful_timeout, _cancel_requests)

        # A Python-level handler, not ``loop.add_signal_handler``: granian sets its handlers before its loop
        # runs, and uvloop drops a signal that arrives between ``add_signal_handler`` and the loop's start
        # (a group SIGTERM while the worker starts: it went on serving). Handled here, the signal is queued
        # for the loop whenever it comes, and one that came earlier went to the inherited handler.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))
        if _stop_before_serving:
            loop.call_soon(stop)
        return event

    granian._signals.set_loop_signals = going_away_first


def _cancel_requests() -> None:
    running = [task for task in _requests if not task.done()]
    if running:
        logging.getLogger("pyfly_hydra").warning(
            "%d request(s) still running at server.graceful_timeout: cancelled, so the worker runs its lifespan"
            " shutdown before it stops",
            len(running),
        )
    for task in running:
        task.cancel()


class ClosingWhenRetiring:
    """ASGI: once the worker retires, every response says ``Connection: close`` (hyper then closes). Each
    request's task is known, to be cancelled at the graceful timeout of a stop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Any, send: Send) -> Awaitable[None]:
        if scope["type"] == "lifespan":
            return self.app(scope, receive, send)
        task = asyncio.current_task()
        if task is not None:
            _requests.add(task)
        if not _retiring or scope["type"] != "http":
            return self.app(scope, receive, send)
        return self.app(scope, receive, _closing(send))


def _closing(send: Send) -> Send:
    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), CONNECTION_CLOSE]}
        await send(message)

    return send_closing


class WSGIClosingWhenRetiring:
    """WSGI: the same, through ``start_response``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _retiring:
            return self.app(environ, start_response)

        def closing_start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            return start_response(status, [*headers, ("Connection", "close")], *args)

        return self.app(environ, closing_start_response)
