"""One log format for the runner, the server and the access log: Hydra's ``hydra/job_logging``.

Hydra configures the runner's logging from the chosen ``hydra/job_logging`` (``log=json`` picks
pyfly-hydra's JSON one). The runner hands the same dictionary to the server, which applies it in
its own process and in every worker, so granian's, uvicorn's and hypercorn's lines and the access
log come out through the same handlers and formatter.
"""

from __future__ import annotations

import logging
from typing import Any

from pyfly_hydra.system.log_files import PLAIN_FILE_HANDLERS, WATCHED_FILE_HANDLER
from pyfly_hydra.worker.log_format import JSON_FORMATTER, SERVER_LOGGERS, JsonFormatter


def writes_json(job_logging: dict[str, Any] | None) -> bool:
    """Whether the job's logging writes its console lines as JSON (``log=json``)."""
    if not job_logging:
        return False
    formatters = job_logging.get("formatters") or {}
    console = (job_logging.get("handlers") or {}).get("console") or {}
    return (formatters.get(console.get("formatter")) or {}).get("()") == JSON_FORMATTER


def job_logging() -> dict[str, Any] | None:
    """The logging dictionary Hydra configured this job with, resolved; ``None`` outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    container = OmegaConf.to_container(HydraConfig.get().job_logging, resolve=True)
    return container if isinstance(container, dict) else None


def server_logging(job_logging: dict[str, Any] | None, *, level: str) -> dict[str, Any] | None:
    """The job's logging dictionary, for the server and its workers: server loggers into its handlers, its file
    handlers following a rotated file.

    ``None`` when the job's logging sets up no root logger (``hydra/job_logging=none``): each server
    keeps its own logging then.
    """
    if not job_logging or job_logging.get("root") is None:
        return None
    config: dict[str, Any] = dict(job_logging)
    config["disable_existing_loggers"] = False  # the runner's loggers exist already in this process
    loggers = dict(config.get("loggers") or {})
    for name in ("pyfly_hydra", *SERVER_LOGGERS):
        loggers.setdefault(name, {"level": level.upper(), "propagate": True})
    config["loggers"] = loggers
    config["handlers"] = {name: _watched(handler) for name, handler in (config.get("handlers") or {}).items()}
    return config


def _watched(handler: dict[str, Any]) -> dict[str, Any]:
    """A file handler that reopens its path once logrotate has moved the file (``system.log_files``)."""
    if handler.get("class") in PLAIN_FILE_HANDLERS:
        return {**handler, "class": WATCHED_FILE_HANDLER}
    return handler


# The lines the runner writes itself, by kind, and the level each has as a JSON line.
RUNNER_LINE_LEVELS = {"error": logging.ERROR, "notice": logging.WARNING}


def runner_line(kind: str, message: str, *, json_lines: bool) -> str:
    """A line the runner writes itself, outside logging (an error, a notice before logging is set up):
    ``pyfly-hydra: KIND: message`` as text, or one JSON object like every other line under ``log=json``."""
    if not json_lines:
        return f"pyfly-hydra: {kind}: {message}"
    record = logging.LogRecord("pyfly_hydra", RUNNER_LINE_LEVELS[kind], "", 0, message, None, None)
    return JsonFormatter().format(record)
