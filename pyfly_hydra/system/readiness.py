"""Whether the server is ready for traffic, said once and heard by systemd and the admin listener alike.

``starting`` until every worker of the start serves, ``serving`` through rolls and recycling (the old workers
serve until their replacements do), ``draining`` from the stop signal on. systemd hears each change as
``READY=1`` / ``STOPPING=1`` (``system.notify``); the admin listener's ``/readyz`` answers 200 only while
``serving``, so a load balancer takes the instance out as soon as it drains.
"""

from __future__ import annotations

import logging

from pyfly_hydra.system.notify import notify

logger = logging.getLogger("pyfly_hydra")

STARTING, SERVING, DRAINING = "starting", "serving", "draining"


class Readiness:
    """The state of this process's server (the runner holds one server, so one state per process)."""

    def __init__(self) -> None:
        self.state = STARTING  # one assignment per change, read by the admin listener's threads

    def serving(self, server: str, count: int) -> None:
        """Every worker of the start serves: one line, ``READY=1`` for systemd, /readyz 200."""
        logger.info("%d %s worker(s) serving", count, server)
        self.state = SERVING
        notify("READY=1", f"STATUS={server}: {count} worker(s) serving")

    def draining(self, server: str) -> None:
        """The stop signal came: ``STOPPING=1`` for systemd, /readyz 503 while the workers drain."""
        self.state = DRAINING
        notify("STOPPING=1", f"STATUS={server}: draining")


READINESS = Readiness()
