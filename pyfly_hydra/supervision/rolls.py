"""A rolling restart (SIGHUP) as every server's runner reports it: its log lines, what systemd is told
(``system.notify``), and its entry in the run's startup record (``server_info.json``'s ``rolls``), so whoever
reads the record sees which deploys the run served.

pyfly-hydra's supervisor (uvicorn, hypercorn) and its granian roll (``servers.granian.roll``) replace the
workers their own way and say so through ``Roll``."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from pyfly_hydra.system.notify import notify, reloading
from pyfly_hydra.worker.app import FAILURE_REPORT_ENV

logger = logging.getLogger("pyfly_hydra")
T = TypeVar("T")


@dataclass
class Roll:
    """One roll of ``count`` ``server`` workers, from ``begin`` to ``done`` or ``stopped``; a context manager,
    so its report file goes whichever way the roll ends."""

    server: str
    count: int
    record: Path | None  # the run's server_info.json; None: the run keeps no record
    began: float = field(default_factory=time.time)
    replaced: list[tuple[int, int]] = field(default_factory=list)  # (old pid, new pid)
    report: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="pyfly-hydra-roll-")[1]))

    def __enter__(self) -> Roll:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.report.unlink(missing_ok=True)

    @staticmethod
    def begin(server: str, count: int, record: Path | None) -> Roll:
        logger.info("SIGHUP: rolling %d %s worker(s) onto the app's current code, one at a time", count, server)
        notify(*reloading(), f"STATUS={server}: rolling {count} worker(s)")
        return Roll(server, count, record)

    def start(self, start: Callable[[], T]) -> T:
        """``start()`` a new worker that, if its app fails to import, leaves why in ``report`` (``worker.app``)
        instead of logging a line of its own: the roll's one error line says it."""
        os.environ[FAILURE_REPORT_ENV] = str(self.report)
        try:
            return start()
        finally:
            del os.environ[FAILURE_REPORT_ENV]

    def replace(self, old: int, new: int) -> None:
        """Worker ``new`` serves in place of ``old``, which drains now."""
        logger.info("%s worker pid %s rolled (SIGHUP); replaced by pid %s", self.server, old, new)
        self.replaced.append((old, new))

    def done(self) -> None:
        logger.info("SIGHUP: %d %s worker(s) rolled", self.count, self.server)
        notify("READY=1", f"STATUS={self.server}: {self.count} worker(s) serving, rolled")
        self._note(outcome="rolled")

    def stopped(self, failure: str) -> None:
        """A new worker did not come up (``failure`` says which and how): one error line with why (the app's
        error it reported, then its traceback); the workers not rolled serve on."""
        reason, _, traceback = self.report.read_text().partition("\n") if self.report.exists() else ("", "", "")
        failure = f"{failure}: {reason}" if reason else failure
        serving_on = self.count - len(self.replaced)
        logger.error(
            "SIGHUP: %s; the roll stopped and %d worker(s) serve on (a SIGHUP once it is fixed rolls again)%s",
            failure, serving_on, f"\n{traceback}" if traceback else "",
        )  # fmt: skip
        notify("READY=1", f"STATUS={self.server}: roll stopped, {self.count} worker(s) serving")
        self._note(outcome=f"stopped: {failure}")

    def _note(self, *, outcome: str) -> None:
        if self.record is None:
            return
        entry = {
            "began": datetime.fromtimestamp(self.began, UTC).isoformat(timespec="seconds"),
            "seconds": round(time.time() - self.began, 2),
            "replaced": [{"old_pid": old, "new_pid": new} for old, new in self.replaced],
            "outcome": outcome,
        }
        try:
            info = json.loads(self.record.read_text())
            info.setdefault("rolls", []).append(entry)
            written = self.record.with_name(f".{self.record.name}.{os.getpid()}")
            written.write_text(json.dumps(info, indent=2) + "\n")
            written.replace(self.record)
        except (OSError, ValueError) as error:
            logger.warning("the roll is not in the run's record %s: %s", self.record, error)
