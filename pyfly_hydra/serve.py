"""``mode=serve``: validate everything, say what runs, record it, and hand over to the server."""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pyfly_hydra.apps import AppTarget, load_app_target
from pyfly_hydra.bind import ensure_bindable
from pyfly_hydra.config import ServerProperties
from pyfly_hydra.demo import SERVER_ENV
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.ports import ApplicationServerPort, EventLoopPort
from pyfly_hydra.properties import validate_properties
from pyfly_hydra.proxy_headers import APP_ENV, FACTORY_ENV, TRUSTED_ENV, WRAPPED_APP
from pyfly_hydra.resolvers import SERVER_PRIORITY, is_installed, loop_priority, module_available
from pyfly_hydra.server_info import ServerInfo

logger = logging.getLogger("pyfly_hydra")


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, validated: the server, its loop, the app, and the summary of it."""

    server: ApplicationServerPort
    loop: EventLoopPort
    app: AppTarget
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


def _instantiate(key: str, node: DictConfig, port: type, **overrides: Any) -> Any:
    adapter = instantiate(node, _convert_="object", **overrides)
    if not isinstance(adapter, port):
        raise ConfigError(f"{key}._target_", node._target_, f"does not implement {port.__name__}")
    return adapter


def behind_proxy_headers(app: AppTarget, *, trusted: str) -> AppTarget:
    """Serve ``app`` through the ProxyHeadersMiddleware factory; workers find the real app in the environment."""
    os.environ[APP_ENV] = app.import_string
    os.environ[FACTORY_ENV] = "1" if app.factory else "0"
    os.environ[TRUSTED_ENV] = trusted
    return AppTarget(import_string=WRAPPED_APP, factory=True)


def make_plan(cfg: DictConfig) -> Plan:
    """Validate the composed config and build the adapters; raise ConfigError on the first problem."""
    properties = server_properties(cfg.server)
    logging.getLogger("pyfly_hydra").setLevel(properties.log_level.upper())
    loop: EventLoopPort = _instantiate("loop", cfg.loop, EventLoopPort)
    _require_installed("loop", loop.name, loop.module, loop_priority(sys.platform))
    server: ApplicationServerPort = _instantiate(
        "server", cfg.server, ApplicationServerPort, workers=properties.workers
    )
    _require_installed("server", server.name, server.module, SERVER_PRIORITY)
    server.check(loop=loop)
    app = load_app_target(cfg.app, factory=cfg.app_factory)
    if properties.proxy_headers and not getattr(server, "handles_proxy_headers", False):
        app = behind_proxy_headers(app, trusted=properties.forwarded_allow_ips)
    info = ServerInfo(
        app=cfg.app,
        server=server.name,
        version=server.version(),
        loop=loop.name,
        workers=properties.workers,
        http=properties.http,
        host=properties.host,
        port=properties.port,
        tls=properties.ssl_certfile is not None,
    )
    return Plan(server=server, loop=loop, app=app, info=info)


def serve(cfg: DictConfig, output_dir: Path | None = None) -> int:
    """Serve the configured app until SIGINT/SIGTERM; return the exit code."""
    plan = make_plan(cfg)
    ensure_bindable(plan.info.host, plan.info.port)
    logger.info(plan.info.log_line())
    if output_dir is not None:
        plan.info.write(output_dir)
    os.environ[SERVER_ENV] = plan.server.name
    # Everything allocated so far (Hydra's and OmegaConf's object graphs) lives as long as the process:
    # keep the garbage collector from walking it on every full collection while requests are served.
    gc.freeze()
    code = plan.server.run(app=plan.app, loop=plan.loop)
    logger.info("%s stopped (exit code %d)", plan.server.name, code)
    return code
