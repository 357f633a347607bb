"""What pyfly-hydra adds inside each granian worker: dying with the runner, telling ``worker.drain`` when it
stops, and retiring without losing a request (granian calls ``load`` first thing in every worker).

When a worker stops, granian asks hyper for a graceful shutdown of every connection, and hyper closes an
idle keep-alive connection at once (``src/workers.rs``: ``conn.graceful_shutdown()`` on the worker's stop
signal), racing a client that is sending its next request on it: that request is lost. A worker being
replaced (lifetime, memory) is therefore *retired* first: told with ``RETIRE_SIGNAL``, it answers every
request with ``Connection: close``, so its keep-alive clients move to the other workers, and only once it
holds no connection (or its keep-alive timeout has passed, when granian itself would have closed any idle
one) is it stopped (``servers.granian.server``: ``GroupSignalWorker.terminate``).

Each worker also tells its runner when it serves (``tell_serving``): its pid on a pipe once its loop runs
(once the app is loaded, for WSGI) and, under lifespan, once its startup completed. A rolling restart
(``servers.granian.roll``) stops an old worker only then. From then on the watchdog (``worker.watchdog``)
watches its loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from pyfly_hydra.worker import drain
from pyfly_hydra.worker.app import HTTPFirst
from pyfly_hydra.worker.control import SUPERVISOR_SIGNALS, die_with_parent
from pyfly_hydra.worker.types import Message, Scope, Send
from pyfly_hydra.worker.watchdog import REARM_SECONDS, LoopWatchdog, Watchdog

RETIRE_SIGNAL = signal.SIGUSR1
CONNECTION_CLOSE = (b"connection", b"close")
GOING_AWAY_SECONDS = 1.0  # how long a stopping worker may take to close its open websockets with 1001
GOING_AWAY_POLL = 0.01
_retiring = False
_stop_came_early = False  # a stop signal reached this worker before granian's own handlers were set
_watching: LoopWatchdog | None = None  # server.worker_timeout, once this worker serves


def _retire(signum: int, frame: FrameType | None) -> None:
    global _retiring
    _retiring = True


def _keep_early_stop(signum: int, frame: FrameType | None) -> None:
    """Keep a stop signal that reached the worker while it loads the app: granian's worker handlers, set once
    the app is loaded, act on it at once. Without this a group SIGTERM during start-up was swallowed and the
    worker went on to serve (or, left to its default action, ended the worker: granian saw a crash)."""
    global _stop_came_early
    _stop_came_early = True


def take_signals() -> None:
    """A spawned worker starts with its runner's signals blocked (``servers.granian.server``: ``start``), so
    none is lost or acted on by default before this: the runner's own are ignored (a group SIGHUP or SIGQUIT
    is the runner's to act on), a stop is kept for granian's handlers, ``RETIRE_SIGNAL`` retires; then they
    are unblocked, and one that came meanwhile is handled now."""
    handlers = {signal.SIGINT: _keep_early_stop, signal.SIGTERM: _keep_early_stop, RETIRE_SIGNAL: _retire}
    for sig in SUPERVISOR_SIGNALS:
        # Never SIG_IGN first for the ones it handles: setting SIG_IGN discards a pending signal, blocked or
        # not (POSIX), and a group SIGTERM that came during the start was lost that way (CI32).
        signal.signal(sig, handlers.get(sig, signal.SIG_IGN))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)


def load(
    *,
    parent_pid: int,
    loader: Callable[[], Any],
    interface: str,
    graceful_timeout: float,
    serving: Connection,
    watchdog: Watchdog | None,
) -> Any:
    """granian's ``target_loader``: the app, in a worker that dies with ``parent_pid``, can be retired, says on
    ``serving`` when it serves, and is watched by ``watchdog`` from then on. ``interface`` is granian's: asgi
    (with lifespan: it serves once its startup completed), asginl or wsgi."""
    started = partial(_started, serving, watchdog)
    if os.getpid() != parent_pid:  # a worker process (not a thread worker of the runner itself)
        die_with_parent(parent_pid)
        take_signals()
        _tell_drain_on_stop(graceful_timeout, started_with_loop=started if interface == "asginl" else None)
    app = loader()
    if interface == "wsgi":  # granian's threads call it: no event loop to watch
        tell_serving(serving)
        return WSGIClosingWhenRetiring(app)
    return ClosingWhenRetiring(app, started=started if interface == "asgi" else None)


def tell_serving(serving: Connection) -> None:
    """This worker's pid to the runner: it serves (the listening socket queues what comes before)."""
    serving.send(os.getpid())


def _started(serving: Connection, watchdog: Watchdog | None) -> None:
    """In the worker's running loop, once it serves: the runner is told, and the watchdog armed."""
    global _watching
    tell_serving(serving)
    if watchdog is not None:
        _watching = watchdog.started()
        asyncio.get_running_loop().call_later(REARM_SECONDS, _beat)


def _beat() -> None:
    if _watching is not None:
        _watching.beat()
        asyncio.get_running_loop().call_later(REARM_SECONDS, _beat)


def _stop_watching() -> None:
    global _watching
    if _watching is not None:
        _watching.stop()
        _watching = None


def _tell_drain_on_stop(graceful_timeout: float, *, started_with_loop: Callable[[], None] | None) -> None:
    """granian's worker stop signal (SIGINT, SIGTERM) tells ``worker.drain`` first, and reaches granian once
    the open websockets have been closed with 1001 (at most ``GOING_AWAY_SECONDS``): granian's Rust side
    drops them without a close frame the moment it stops. Requests still running ``graceful_timeout``
    seconds after the stop are cancelled, so the worker runs its lifespan shutdown and exits before
    granian's supervisor kills it (``workers_kill_timeout`` is set a margin later). granian imports
    ``set_loop_signals`` from ``granian._signals`` when its worker starts, after this loader has run; where
    nothing else says when the worker serves (no lifespan), the loop's first turn calls ``started_with_loop``."""
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
            _stop_watching()
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
        # for the loop whenever it comes, and one that came earlier was kept (``take_signals``).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))
        if _stop_came_early:
            loop.call_soon(stop)
        elif started_with_loop is not None:
            loop.call_soon(started_with_loop)
        return event

    granian._signals.set_loop_signals = going_away_first


def _cancel_requests() -> None:
    running = _request_tasks()
    if running:
        logging.getLogger("pyfly_hydra").warning(
            "%d request(s) still running at server.graceful_timeout: cancelled, so the worker runs its lifespan"
            " shutdown before it stops",
            len(running),
        )
    for task in running:
        task.cancel()


def _request_tasks() -> list[asyncio.Task[Any]]:
    """The requests this worker still runs: granian runs each in an asyncio task of its own whose coroutine is its
    ``future_watcher`` (``granian._futures``), so they are found when needed, not recorded as they come (asking
    each request for its task cost 4% of granian's throughput on a small response)."""
    from granian._futures import _future_watcher_wrapper  # only when a stop needs it: the adapter imports this module

    request = _future_watcher_wrapper(None).__code__  # the coroutine granian runs each request's task in
    return [task for task in asyncio.all_tasks() if getattr(task.get_coro(), "cr_code", None) is request]


class ClosingWhenRetiring:
    """ASGI: once the worker retires, every response says ``Connection: close`` (hyper then closes). The
    lifespan startup's completion tells the runner that the worker serves. An HTTP request goes straight to the
    worker app's HTTP path (``worker.app.HTTPFirst``)."""

    def __init__(self, app: Any, *, started: Callable[[], None] | None) -> None:
        self.app = app
        self.http = app.http if isinstance(app, HTTPFirst) else app
        self.started = started

    def __call__(self, scope: Scope, receive: Any, send: Send) -> Awaitable[None]:
        if scope["type"] == "http":
            return self.http(scope, receive, _closing(send) if _retiring else send)
        if scope["type"] == "lifespan" and self.started is not None:
            return _lifespan_telling_started(self.app, scope, receive, send, self.started)
        return self.app(scope, receive, send)


async def _lifespan_telling_started(
    app: Any, scope: Scope, receive: Any, send: Send, started: Callable[[], None]
) -> None:
    """The app's lifespan, calling ``started`` once its startup completed, or once it ended without failing
    its startup (an app that does not speak lifespan: granian serves it all the same)."""
    told = failed = False

    async def send_telling(message: Message) -> None:
        nonlocal told, failed
        await send(message)
        if message["type"] == "lifespan.startup.complete":
            told = True
            started()
        elif message["type"] == "lifespan.startup.failed":
            failed = True

    try:
        await app(scope, receive, send_telling)
    finally:
        if not told and not failed:
            started()


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
