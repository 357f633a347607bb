"""The demo app from a factory that takes 1.5 s in a server's worker process (not in the runner)."""

from __future__ import annotations

import multiprocessing
import time

from pyfly_hydra.demo import app as demo


def create_app() -> object:
    if multiprocessing.parent_process() is not None:  # a worker process the server started
        time.sleep(1.5)
    return demo
