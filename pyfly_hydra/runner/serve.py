"""``mode=serve``: validate everything, say what runs, record it, and hand over to the server."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pyfly_hydra.config.environment import FromEnvironment, notice_unused_variables
from pyfly_hydra.config.properties import validate_properties
from pyfly_hydra.config.resolvers import SERVER_PRIORITY, is_installed, loop_priority, module_available
from pyfly_hydra.config.schema import ServerProperties
from pyfly_hydra.demo import SERVER_ENV
from pyfly_hydra.errors import ConfigError, ServeError
from pyfly_hydra.ports import ApplicationServerPort, EventLoopPort, Serving
from pyfly_hydra.registry import MOVED_TARGETS
from pyfly_hydra.runner.app_check import app_check
from pyfly_hydra.runner.logs import job_logging, server_logging
from pyfly_hydra.runner.server_info import ServerInfo
from pyfly_hydra.supervision.reload import quiet_watcher, watched_sources
from pyfly_hydra.supervision.signals import runner_signals
from pyfly_hydra.system.bind import check_listener
from pyfly_hydra.worker.app import plan_worker_app
from pyfly_hydra.worker.apps import AppTarget
from pyfly_hydra.worker.async_library import library_of

logger = logging.getLogger("pyfly_hydra")


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, validated: the server, what it is handed to serve, and the summary of it."""

    server: ApplicationServerPort
    serving: Serving
    info: ServerInfo


def server_properties(node: DictConfig) -> ServerProperties:
    """The ``server`` node as validated ServerProperties (``_target_`` left out)."""
    obj = OmegaConf.to_object(node)
    return validate_properties(ServerProperties(**{f.name: getattr(obj, f.name) for f in fields(ServerProperties)}))


def _require_installed(key: str, name: str, module: str | None, alternatives: tuple[str, ...]) -> None:
    if module_available(module):
        return
    installed = [other for other in alternatives if other != name and is_installed(other)]
    instead = f"installed: {', '.join(installed)}" if installed else "none of the alternatives is installed either"
    raise ConfigError(key, name, f"{module} is not installed (pip install 'pyfly-hydra[{name}]'); {instead}")


def adapter_class(key: str, target: str) -> type[Any]:
    """The class ``{key}._target_`` names, imported: an adapter is built once, by the runner, from validated
    properties (never re-read from the raw node)."""
    if target in MOVED_TARGETS:
        raise ConfigError(f"{key}._target_", target, f"moved: use {MOVED_TARGETS[target]}")
    module_name, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name) if module_name else None
    except ImportError as error:
        raise ConfigError(f"{key}._target_", target, f"cannot import {module_name}: {error}") from None
    if not isinstance(found, type):
        raise ConfigError(f"{key}._target_", target, "names no class (module.Class)")
    return found


def _checked(key: str, target: str, adapter: Any, port: type) -> Any:
    if not isinstance(adapter, port):
        raise ConfigError(f"{key}._target_", target, f"does not implement {port.__name__}")
    return adapter


def served_app(
    app: AppTarget,
    server: ApplicationServerPort,
    *,
    keep_logging: bool,
    metrics_dir: Path | None = None,
    loop: str,
) -> AppTarget:
    """What the server is given: the user's app, or the worker-app factory with the layers its key table asks
    (``metrics_dir``: where the workers count their requests, when the admin listener is on; ``loop``: what the
    workers run, whose async library the layers wait with)."""
    properties, layers = server.properties, server.layers()
    if app.interface == "wsgi" and properties.lifespan == "on":
        raise ConfigError("server.lifespan", "on", "a WSGI app has no lifespan events; use auto or off")

    def through(layer: str, value: Any) -> Any:
        return value if layer in layers else None

    return plan_worker_app(
        app,
        native_wsgi=server.native_wsgi,
        trusted_proxies=through("ProxyHeaders", properties.forwarded_allow_ips if properties.proxy_headers else None),
        lifespan=through("LifespanGuard", properties.lifespan),
        max_body_bytes=through("BodyLimit", properties.max_body_bytes),
        max_header_bytes=through("HeadLimit", properties.max_header_bytes),
        body_timeout=through("BodyTimeout", properties.body_timeout),
        access_log="AccessLog" in layers and properties.access_log,
        access_log_format=properties.access_log_format,
        request_id="RequestId" in layers and properties.request_id,
        metrics_dir=str(metrics_dir) if metrics_dir is not None and "Metrics" in layers else None,
        root_path=through("RootPath", properties.root_path or None),
        keep_logging=keep_logging,
        async_library=library_of(loop),
    )


def make_plan(
    cfg: DictConfig,
    output_dir: Path | None = None,
    from_environment: Sequence[FromEnvironment] = (),
    *,
    metrics_dir: Path | None = None,
) -> Plan:
    """Validate the composed config and build the adapters; raise ConfigError on the first problem.
    ``from_environment``: the overrides the environment made, for the record; ``metrics_dir``: the workers count
    their requests there (``server.metrics``)."""
    properties = server_properties(cfg.server)
    logging.getLogger("pyfly_hydra").setLevel(properties.log_level.upper())
    notice_unused_variables(cfg)
    # The app imports in the check's fork while the server's adapter is built and checked here.
    with app_check(cfg.app, app_dir=cfg.app_dir, factory=cfg.app_factory, interface=cfg.interface) as check:
        loop = _checked("loop", cfg.loop._target_, adapter_class("loop", cfg.loop._target_)(), EventLoopPort)
        _require_installed("loop", loop.name, loop.module, loop_priority(sys.platform))
        server_class = adapter_class("server", cfg.server._target_)
        server: ApplicationServerPort = _checked(
            "server", cfg.server._target_, server_class(properties=properties), ApplicationServerPort
        )
        _require_installed("server", server.name, server.module, SERVER_PRIORITY)
        server.check(loop=loop)
        user_app, apart = check.outcome()
    log_config = server_logging(job_logging(), level=properties.log_level)
    app = served_app(user_app, server, keep_logging=log_config is not None, metrics_dir=metrics_dir, loop=loop.name)
    reload_sources = None
    if properties.reload:
        reload_sources = watched_sources(
            dirs=properties.reload_dirs,
            includes=properties.reload_includes,
            excludes=properties.reload_excludes,
            output_dir=output_dir,
            app_dir=user_app.directory,
        )
        logger.info(reload_sources.describe())
        quiet_watcher()
    serving = Serving(
        app=app, loop=loop, log_config=log_config, reload_sources=reload_sources,
        workers_may_fork=apart and reload_sources is None,
    )  # fmt: skip
    server.check_native(serving)
    info = ServerInfo(
        app=cfg.app,
        interface=user_app.interface,
        server=server.name,
        version=server.version(),
        loop=loop.name,
        workers=properties.workers,
        http=server.served_http(),
        host=properties.host,
        port=properties.port,
        tls=properties.ssl_certfile is not None,
        uds=properties.uds,
        fd=properties.fd,
        from_environment={read.key: read.variable for read in from_environment},
    )
    return Plan(server=server, serving=serving, info=info)


def _notice_another_machine(provenance: DictConfig | None) -> None:
    """One notice line when a promoted environment was measured on a machine unlike this one."""
    if provenance is None or provenance.get("machine") is None:
        return
    from pyfly_hydra.runner.machine import differences, fingerprint  # only environments from pyfly-hydra-promote pay

    changed = differences(OmegaConf.to_container(provenance.machine), fingerprint())  # type: ignore[arg-type]
    if changed:
        logger.warning(
            "notice: this environment was tuned on another machine (%s; sweep %s): its figures may not hold here;"
            " re-run the sweep on this machine to re-tune",
            ", ".join(changed),
            provenance.get("sweep", "-"),
        )


@contextmanager
def _metrics_files(cfg: DictConfig) -> Iterator[Path | None]:
    """A private directory for the workers' request counts while the run lasts, when the admin listener is on."""
    if cfg.server.metrics.port is None:
        yield None
        return
    # In memory (tmpfs) where there is one: a page of a file on disk that is being written back stalls the
    # worker's next count into it until the write is done.
    memory = Path("/dev/shm")
    place = str(memory) if memory.is_dir() and os.access(memory, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="pyfly-hydra-metrics-", dir=place) as directory:
        yield Path(directory)


@contextmanager
def _admin(plan: Plan, metrics_dir: Path | None) -> Iterator[None]:
    """The admin listener (``server.metrics.port``) for the block, when it is on."""
    settings = plan.server.properties.metrics
    if metrics_dir is None or settings.port is None:
        yield
        return
    from pyfly_hydra import __version__
    from pyfly_hydra.runner.admin import admin_listener
    from pyfly_hydra.runner.metrics import ServerMetrics

    info = plan.info
    labels = {"server": info.server, "server_version": info.version, "loop": info.loop, "version": __version__}
    metrics = ServerMetrics(directory=metrics_dir, info=labels)
    with admin_listener(host=settings.host, port=settings.port, metrics=metrics) as url:
        logger.info("admin listener at %s: /metrics, /healthz, /readyz", url)
        yield


def serve(cfg: DictConfig, output_dir: Path | None = None, from_environment: Sequence[FromEnvironment] = ()) -> int:
    """Serve the configured app until SIGINT/SIGTERM; return the exit code. ``from_environment``: the overrides
    the environment made (``config.environment.applied``), said at startup and recorded."""
    with _metrics_files(cfg) as metrics_dir:
        return _serve(cfg, output_dir, from_environment, metrics_dir=metrics_dir)


def _serve(
    cfg: DictConfig, output_dir: Path | None, from_environment: Sequence[FromEnvironment], *, metrics_dir: Path | None
) -> int:
    plan = make_plan(cfg, output_dir, from_environment, metrics_dir=metrics_dir)
    check_listener(host=plan.info.host, port=plan.info.port, uds=plan.info.uds, fd=plan.info.fd)
    with _admin(plan, metrics_dir):  # bound before the startup line: a port in use is the one line
        logger.info(plan.info.log_line())
        if from_environment:
            logger.info("from the environment: %s", ", ".join(str(read) for read in from_environment))
        _notice_another_machine(cfg.provenance)
        serving = plan.serving
        if output_dir is not None:
            serving = replace(serving, record=plan.info.write(output_dir))
        os.environ[SERVER_ENV] = plan.server.name
        # Everything allocated so far (Hydra's and OmegaConf's object graphs) lives as long as the process:
        # keep the garbage collector from walking it on every full collection while requests are served.
        gc.freeze()
        with runner_signals():
            code = plan.server.run(serving)
    logger.info("%s stopped (exit code %d)", plan.server.name, code)
    if code:
        raise ServeError(f"{plan.server.name} stopped with exit code {code}; its log above says why")
    return code
