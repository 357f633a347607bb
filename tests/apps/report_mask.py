"""A spawned process's target: it sends its blocked signals back (tests/test_signal_handlers.py)."""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection


def report(conn: Connection) -> None:
    conn.send(sorted(int(sig) for sig in signal.pthread_sigmask(signal.SIG_BLOCK, [])))
