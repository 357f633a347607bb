"""``server.worker_timeout``: a worker whose event loop stops turning is stuck; it dumps its stacks and dies.

An async worker blocked by a sync call in a handler, or a deadlock, holds its connections forever and no
server notices (gunicorn's ``--timeout`` does this for sync workers only). Each turn of the loop re-arms
faulthandler's timer (``faulthandler.dump_traceback_later``, at most once per ``REARM_SECONDS``); it runs
in a C thread that needs no GIL, so it fires even while Python code holds the GIL forever. When it fires,
the Python stack of every thread goes to the worker's stacks file and the process ends with ``_exit(1)``:
the kernel closes its connections and the runner, finding the stacks (``stuck_stacks``), logs one line
with them and replaces the worker.

Standard library only: this runs inside every worker.
"""

from __future__ import annotations

import faulthandler
import os
import time
from dataclasses import dataclass
from typing import IO

REARM_SECONDS = 1.0  # a turn of the loop re-arms the timer at most this often
STACKS_FILE = "stacks-{pid}.txt"


@dataclass(frozen=True)
class Watchdog:
    """What a worker's watchdog needs from its runner: the timeout, and where a stuck worker's stacks go."""

    timeout: float
    stacks_dir: str

    def started(self) -> LoopWatchdog:
        """This worker's watchdog, armed: call once the worker serves, then ``beat`` on each turn."""
        return LoopWatchdog(self.timeout, open(stacks_path(self.stacks_dir, os.getpid()), "w"))


class LoopWatchdog:
    """faulthandler's timer, re-armed by ``beat``: it fires ``timeout`` seconds after the loop last turned."""

    def __init__(self, timeout: float, stacks: IO[str]) -> None:
        # The timer is armed at most REARM_SECONDS before the loop stops turning: arming for that much
        # longer makes it fire no sooner than ``timeout`` after the last turn.
        self._after = timeout + REARM_SECONDS
        self._stacks = stacks
        self._armed_at = -REARM_SECONDS
        self.beat()

    def beat(self) -> None:
        """The loop turned: the worker is not stuck for another ``timeout``."""
        now = time.monotonic()
        if now - self._armed_at >= REARM_SECONDS:
            self._armed_at = now
            faulthandler.dump_traceback_later(self._after, exit=True, file=self._stacks)

    def stop(self) -> None:
        """Disarmed, for good: the worker is stopping (its drain has its own deadline)."""
        faulthandler.cancel_dump_traceback_later()
        self._armed_at = float("inf")


def stacks_path(stacks_dir: str, pid: int) -> str:
    return os.path.join(stacks_dir, STACKS_FILE.format(pid=pid))


def stuck_stacks(stacks_dir: str, pid: int) -> str | None:
    """The stacks worker ``pid`` dumped when its watchdog fired (its file removed); None when it did not."""
    path = stacks_path(stacks_dir, pid)
    try:
        with open(path) as file:
            stacks = file.read()
        os.unlink(path)
    except FileNotFoundError:
        return None
    return stacks or None
