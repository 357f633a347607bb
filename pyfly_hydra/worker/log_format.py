"""The run's log lines as a worker writes them: the JSON formatter, and logging kept through an app's import.

Standard library only: a worker's logging configuration names ``JsonFormatter`` by its dotted path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
        for name in record.__dict__.get("access_fields", ()):  # an access line's fields (worker.access_log)
            entry[name] = record.__dict__[name]
        if exception is not None:
            entry["exception"] = exception
        return json.dumps(entry, default=str)


JSON_FORMATTER = f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"
