"""Log files that follow logrotate: the runner reopens its own on SIGUSR1, every worker notices by itself.

logrotate moves the file away and creates a new one (``create``), then signals the service (``postrotate
kill -USR1``). The runner reopens each of its file handlers then. Workers are not signalled (granian's use
SIGUSR1 to retire, ``servers.granian.worker``): their file handlers are ``WatchedFileHandler``s, which reopen
the path when the file under it is no longer the one they write (``runner.logs.server_logging``).
"""

from __future__ import annotations

import logging
import threading
from types import FrameType

logger = logging.getLogger("pyfly_hydra")

WATCHED_FILE_HANDLER = "logging.handlers.WatchedFileHandler"
PLAIN_FILE_HANDLERS = ("logging.FileHandler", "FileHandler")


def _file_handlers() -> list[logging.FileHandler]:
    loggers = [logging.getLogger(), *(item for item in logging.root.manager.loggerDict.values())]
    handlers = {
        handler
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for handler in lg.handlers
        if isinstance(handler, logging.FileHandler)
    }
    return sorted(handlers, key=lambda handler: handler.baseFilename)


def reopen_log_files() -> list[str]:
    """Reopen every file handler of this process at its path; the paths reopened."""
    reopened = []
    for handler in _file_handlers():
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
            handler.stream = handler._open()
        finally:
            handler.release()
        reopened.append(handler.baseFilename)
    return reopened


def on_reopen_signal(signum: int, frame: FrameType | None) -> None:
    """SIGUSR1: reopen in a thread of its own, which takes each handler's lock (the main thread this handler
    interrupts may be inside one of their writes)."""

    def reopen() -> None:
        paths = reopen_log_files()
        logger.info("SIGUSR1: log files reopened (%s)", ", ".join(paths) or "none: the run logs to no file")

    threading.Thread(target=reopen, name="pyfly-hydra-log-reopen", daemon=True).start()
