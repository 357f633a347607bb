"""The runner's side of ``server.worker_timeout`` (``worker.watchdog``): where its workers put their stacks
when they find themselves stuck, and the log of each one found stuck."""

from __future__ import annotations

import logging
import shutil
import tempfile

from pyfly_hydra.worker.watchdog import Watchdog, stuck_stacks

logger = logging.getLogger("pyfly_hydra")


class StuckWorkers:
    """One runner's watchdog settings, and its workers' stacks files in a directory of its own."""

    def __init__(self, server: str, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self.watchdog = Watchdog(timeout=timeout, stacks_dir=tempfile.mkdtemp(prefix="pyfly-hydra-stacks-"))

    @property
    def why(self) -> str:
        """How the runner's line names a stuck worker's end."""
        return (
            f"was stuck: its event loop did not turn for {self.timeout:g} s (server.worker_timeout);"
            " its stacks are logged above and it was killed"
        )

    def found(self, pid: int) -> bool:
        """Whether worker ``pid``, which has exited, was stuck: its stacks are logged if so. Call for every
        worker that exits, so the directory keeps no file of a worker that is gone."""
        stacks = stuck_stacks(self.watchdog.stacks_dir, pid)
        if stacks is None:
            return False
        logger.warning("%s worker pid %s is stuck; the stacks of its threads:\n%s", self.server, pid, stacks.rstrip())
        return True

    def close(self) -> None:
        shutil.rmtree(self.watchdog.stacks_dir, ignore_errors=True)
