"""Running an external load generator (wrk, h2load) and measuring the CPU it used."""

from __future__ import annotations

import resource
import subprocess
import time
from dataclasses import dataclass

from pyfly_hydra.errors import PyflyHydraError

# Seconds an external client may overrun its own duration before it is killed.
OVERRUN_SECONDS = 30.0


class LoadError(PyflyHydraError):
    """The load client could not run or measured nothing."""


@dataclass(frozen=True)
class ToolRun:
    """What an external client printed, how long it ran, and the CPU cores it used on average."""

    stdout: str
    stderr: str
    returncode: int
    wall: float
    cpu_cores: float


def run_tool(command: list[str], *, timeout: float) -> ToolRun:
    """Run ``command`` to completion; CPU comes from the rusage of waited-for children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout + OVERRUN_SECONDS)
    except FileNotFoundError:
        raise LoadError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LoadError(f"{command[0]} ran past {timeout + OVERRUN_SECONDS:.0f} s and was killed") from None
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ToolRun(completed.stdout, completed.stderr, completed.returncode, wall, cpu / wall if wall > 0 else 0.0)


def last_line(text: str) -> str:
    """The last non-empty line of ``text``, for error messages."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
