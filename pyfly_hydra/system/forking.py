"""When this process may fork a worker rather than spawn one."""

from __future__ import annotations

import sys
import threading


def fork_is_safe() -> bool:
    """On Linux (elsewhere fork is not multiprocessing's default, for the sake of the platform's own libraries),
    with no other thread running (a fork copies the locks another thread may hold, and none of their threads)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1
