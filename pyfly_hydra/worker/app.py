"""What each worker serves when the server cannot take the user's app as it is.

Some combinations need the app wrapped inside every worker: a WSGI app on uvicorn (a2wsgi), proxy
headers on granian or hypercorn, ``server.lifespan`` where a server lacks the switch,
``server.max_body_bytes`` and ``server.body_timeout`` (no server bounds ASGI bodies),
``server.max_header_bytes`` where the server's own check misses heads (hypercorn), ``server.root_path``
(one meaning everywhere), the access log (one format everywhere) and the request metrics
(``server.metrics``), websockets closed with 1001 when a worker drains (``worker.drain``), and the
job's logging kept through the app's import (``log_format.kept_logging``).
Workers are separate interpreters that import the app themselves, so the runner describes the
wrapping in one environment variable and points the server at ``build``, a factory each worker calls.
When nothing needs wrapping (a WSGI app served natively with ``server.body_timeout=null`` and no job logging
to share, ``hydra/job_logging=none``), the
server is given the user's import string and nothing of this module runs.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from pyfly_hydra.errors import ConfigError, format_value
from pyfly_hydra.worker.apps import TRACEBACK_HINT, AppTarget, import_object, user_traceback
from pyfly_hydra.worker.async_library import ASYNCIO

SPEC_ENV = "PYFLY_HYDRA_WORKER_APP"
# Set for a rolling restart's new worker (``supervision.rolls``): where it leaves why its app failed, so the
# roll's one error line says it instead of a line of the worker's own.
FAILURE_REPORT_ENV = "PYFLY_HYDRA_FAILURE_REPORT"
WORKER_APP = "pyfly_hydra.worker.app:build"


@dataclass(frozen=True)
class WorkerApp:
    """The user's app and the wrappers every worker puts around it."""

    app: str
    factory: bool
    interface: str  # the user's app: asgi | wsgi
    wsgi_to_asgi: bool = False  # serve a WSGI app to an ASGI-only server through a2wsgi
    trusted_proxies: str | None = None  # apply X-Forwarded-* from these peers
    lifespan: str | None = None  # auto | on | off: settle lifespan in a LifespanGuard
    max_body_bytes: int | None = None  # refuse larger request bodies with 413
    max_header_bytes: int | None = None  # refuse larger parsed request heads with 431
    root_path: str | None = None  # the prefix the proxy strips (server.root_path)
    body_timeout: float | None = None  # answer 408 when a request body stalls this long
    access_log: bool = False  # log every request on pyfly_hydra.access
    access_log_format: str | None = None  # in this format (worker.access_log); None: the default line
    request_id: bool = False  # give every request an X-Request-ID (worker.request_id)
    metrics_dir: str | None = None  # count every request in a file there, for the runner's /metrics
    going_away: bool = False  # close open websockets with 1001 when the worker starts draining
    keep_logging: bool = False  # the job's logging survives what importing the app does to logging
    async_library: str = ASYNCIO  # what the worker's loop runs: the layers' deadlines (worker.async_library)

    @property
    def needed(self) -> bool:
        """Whether any wrapper is asked for."""
        wrappers = (
            self.trusted_proxies, self.lifespan, self.max_body_bytes, self.max_header_bytes, self.body_timeout,
            self.root_path,
        )  # fmt: skip
        flags = (self.wsgi_to_asgi, self.access_log, self.request_id, self.going_away, self.keep_logging)
        return any(flags) or any(wrapper is not None for wrapper in (*wrappers, self.metrics_dir))

    @property
    def observed(self) -> bool:
        """Whether requests are watched to their end (``worker.exchange``): access log, request id or metrics."""
        return self.access_log or self.request_id or self.metrics_dir is not None

    @property
    def served_interface(self) -> str:
        """What the server sees: ASGI once a2wsgi has wrapped a WSGI app."""
        return "asgi" if self.wsgi_to_asgi else self.interface

    def install(self, *, directory: Path | None) -> AppTarget:
        """Publish this spec to the workers; the target the server is given instead of the user's app
        (imported from the user's ``directory``)."""
        os.environ[SPEC_ENV] = json.dumps(asdict(self))
        return AppTarget(import_string=WORKER_APP, factory=True, interface=self.served_interface, directory=directory)


def plan_worker_app(
    app: AppTarget,
    *,
    native_wsgi: bool,
    trusted_proxies: str | None,
    lifespan: str | None,
    max_body_bytes: int | None = None,
    max_header_bytes: int | None = None,
    body_timeout: float | None = None,
    access_log: bool = False,
    access_log_format: str | None = None,
    request_id: bool = False,
    metrics_dir: str | None = None,
    root_path: str | None = None,
    keep_logging: bool = False,
    async_library: str = ASYNCIO,
) -> AppTarget:
    """The target to give the server: the user's own, or ``build`` with what the workers must wrap."""
    spec = WorkerApp(
        app=app.import_string,
        factory=app.factory,
        interface=app.interface,
        wsgi_to_asgi=app.interface == "wsgi" and not native_wsgi,
        trusted_proxies=trusted_proxies,
        lifespan=lifespan if app.interface == "asgi" else None,
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        body_timeout=body_timeout if app.interface == "asgi" or not native_wsgi else None,
        access_log=access_log,
        access_log_format=access_log_format if access_log else None,
        request_id=request_id,
        metrics_dir=metrics_dir,
        root_path=root_path,
        # GoingAway races a websocket's receive with asyncio tasks: under trio hypercorn closes websockets itself.
        going_away=app.interface == "asgi" and async_library == ASYNCIO,
        keep_logging=keep_logging,
        async_library=async_library,
    )
    return spec.install(directory=app.directory) if spec.needed else app


def _app_failed(error: ConfigError) -> NoReturn:
    """One error line and the user's own traceback, then this worker exits 1: its server's supervisor says
    what happens next (waiting for a change, respawning). Raised on, the error printed the whole chain
    twice, through importlib and the server, with a hint that the traceback was hidden."""
    message = f"{error.key}={format_value(error.value)}: {error.allowed.removesuffix(TRACEBACK_HINT)}"
    cause = error.__cause__
    details = f"\n{user_traceback(cause)}" if cause is not None else ""
    report = os.environ.get(FAILURE_REPORT_ENV)
    if report:
        Path(report).write_text(message + details)
    else:
        logging.getLogger("pyfly_hydra").error("%s%s", message, details)
    raise SystemExit(1)


def build() -> Any:
    """The factory workers call: the user's app with the wrappers the runner asked for."""
    from pyfly_hydra.worker.access_log import AccessLog, AccessLogFormat
    from pyfly_hydra.worker.drain import GoingAway
    from pyfly_hydra.worker.exchange import HTTPExchange, WSGIExchange
    from pyfly_hydra.worker.lifespan import LifespanGuard
    from pyfly_hydra.worker.limits import BodyLimit, HeadLimit, WSGIBodyLimit, WSGIHeadLimit
    from pyfly_hydra.worker.log_format import kept_logging
    from pyfly_hydra.worker.metrics import WorkerMetrics
    from pyfly_hydra.worker.proxy_headers import ProxyHeadersMiddleware, TrustedProxies, WSGIProxyHeadersMiddleware
    from pyfly_hydra.worker.root_path import RootPath, WSGIRootPath

    spec = WorkerApp(**json.loads(os.environ[SPEC_ENV]))
    with kept_logging() if spec.keep_logging else nullcontext():
        try:
            app = import_object(spec.app)
        except ConfigError as error:  # the app's own error (a syntax error met by a reload): shown once
            _app_failed(error)
        if spec.factory:
            app = app()
    metrics = WorkerMetrics(spec.metrics_dir) if spec.metrics_dir is not None else None
    access_log = AccessLog(AccessLogFormat.parse(spec.access_log_format)) if spec.access_log else None
    observing = {"metrics": metrics, "access_log": access_log, "request_id": spec.request_id}
    if spec.interface == "wsgi":
        if spec.max_body_bytes is not None:
            app = WSGIBodyLimit(app, limit=spec.max_body_bytes)
        if spec.max_header_bytes is not None and not spec.wsgi_to_asgi:
            app = WSGIHeadLimit(app, limit=spec.max_header_bytes)
        if spec.observed:
            app = WSGIExchange(app, **observing)
        if spec.trusted_proxies is not None:
            app = WSGIProxyHeadersMiddleware(app, TrustedProxies(spec.trusted_proxies))
        if spec.root_path is not None:
            app = WSGIRootPath(app, root_path=spec.root_path)
    if spec.wsgi_to_asgi:
        from a2wsgi import WSGIMiddleware

        app = WSGIMiddleware(app)
    if spec.interface == "asgi":
        if spec.max_body_bytes is not None:
            app = BodyLimit(app, limit=spec.max_body_bytes)
        if spec.max_header_bytes is not None:
            app = HeadLimit(app, limit=spec.max_header_bytes)
        if spec.body_timeout is not None or spec.observed:
            app = HTTPExchange(app, body_timeout=spec.body_timeout, async_library=spec.async_library, **observing)  # type: ignore[arg-type]
        if spec.trusted_proxies is not None:
            app = ProxyHeadersMiddleware(app, TrustedProxies(spec.trusted_proxies))
        if spec.root_path is not None:
            app = RootPath(app, root_path=spec.root_path)
    http_app = app  # what an HTTP request needs: the wrappers below pass it through
    if spec.interface == "asgi" and spec.going_away:
        app = GoingAway(app)
    if spec.lifespan is not None:
        app = LifespanGuard(app, mode=spec.lifespan)
    return HTTPFirst(http=http_app, other=app) if app is not http_app and spec.served_interface == "asgi" else app


class HTTPFirst:
    """ASGI: an HTTP request goes straight to ``http`` (the wrappers it needs), past those only websockets and
    lifespan need (``other``): one call instead of one per wrapper, for every request (a server that looks up
    ``http`` itself, as pyfly-hydra's granian worker does, saves this one too)."""

    def __init__(self, *, http: Any, other: Any) -> None:
        self.http, self.other = http, other

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] == "http":
            return self.http(scope, receive, send)
        return self.other(scope, receive, send)
