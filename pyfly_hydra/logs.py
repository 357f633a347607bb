"""One log format for the runner, the server and the access log: Hydra's ``hydra/job_logging``.

Hydra configures the runner's logging from the chosen ``hydra/job_logging`` (``log=json`` picks
pyfly-hydra's JSON one). The runner hands the same dictionary to the server, which applies it in
its own process and in every worker, so granian's, uvicorn's and hypercorn's lines and the access
log come out through the same handlers and formatter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyfly_hydra.access_log import ACCESS_FIELDS
from pyfly_hydra.registry import SERVERS

# The loggers the servers write to; each propagates to the root handlers of the job's logging.
SERVER_LOGGERS = tuple(logger for server in SERVERS for logger in server.loggers)
# Every logger whose lines are the run's own: the root (whose handlers are the job's), ours, the servers'.
TRACEBACK = "\nTraceback (most recent call last):"
KEPT_LOGGERS = ("", "pyfly_hydra", "pyfly_hydra.access", *SERVER_LOGGERS)


@dataclass(frozen=True)
class _LoggerState:
    handlers: list[logging.Handler]
    filters: list[Any]
    level: int
    propagate: bool
    disabled: bool


@contextmanager
def kept_logging() -> Iterator[None]:
    """The run's logging as it was before the block, whatever the block did to it: an app whose import
    configures logging for the whole process (Litestar's ``LoggingConfig``, Django's ``LOGGING``, a
    ``basicConfig``) keeps its own loggers, not the root's handlers, ours or the servers'."""
    loggers = [logging.getLogger(name) for name in KEPT_LOGGERS]
    saved = [_LoggerState(list(lg.handlers), list(lg.filters), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for lg, state in zip(loggers, saved, strict=True):
            lg.handlers[:] = state.handlers  # a closed file handler reopens on its next line
            lg.filters[:] = state.filters
            lg.setLevel(state.level)
            lg.propagate = state.propagate
            lg.disabled = state.disabled


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the access fields, the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exception = self.formatException(record.exc_info) if record.exc_info else None
        if exception is None and TRACEBACK in message:  # granian logs from Rust, the traceback in the text
            message, _, trace = message.partition(TRACEBACK)
            exception = TRACEBACK.lstrip("\n") + trace.rstrip("\n")
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message.rstrip("\n"),
        }
        for name in ACCESS_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if exception is not None:
            entry["exception"] = exception
        return json.dumps(entry, default=str)


JSON_FORMATTER = f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"


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
    """The job's logging dictionary, for the server and its workers: server loggers into its handlers.

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
    return config


# The lines the runner writes itself, by kind, and the level each has as a JSON line.
RUNNER_LINE_LEVELS = {"error": logging.ERROR, "notice": logging.WARNING}


def runner_line(kind: str, message: str, *, json_lines: bool) -> str:
    """A line the runner writes itself, outside logging (an error, a notice before logging is set up):
    ``pyfly-hydra: KIND: message`` as text, or one JSON object like every other line under ``log=json``."""
    if not json_lines:
        return f"pyfly-hydra: {kind}: {message}"
    record = logging.LogRecord("pyfly_hydra", RUNNER_LINE_LEVELS[kind], "", 0, message, None, None)
    return JsonFormatter().format(record)
