"""The machine a benchmark ran on, as a fingerprint a promoted environment carries (``provenance.machine``).

Serving an environment on a machine whose fingerprint differs prints one notice: figures tuned on 2 CPUs
and Python 3.11 say little about 16 CPUs and Python 3.13.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import psutil

from pyfly_hydra.config.resolvers import MODULES
from pyfly_hydra.system.cpus import usable_cpus

CPUINFO = Path("/proc/cpuinfo")


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` where /proc/cpuinfo does not say)."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def installed_version(name: str) -> str:
    """The installed version of a server or loop, ``built in`` for asyncio, ``-`` when missing."""
    module = MODULES.get(name, name)
    if module is None:
        return f"built in (Python {platform.python_version()})"
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def fingerprint() -> dict[str, str]:
    """What decides how fast a server runs here: CPU model and usable count, memory, OS, kernel, Python, and the
    versions of the servers and loops."""
    machine = {
        "cpu": cpu_model(),
        "cpus": str(usable_cpus()),
        "memory_gib": f"{psutil.virtual_memory().total / 2**30:.0f}",
        "os": f"{platform.system()} {platform.machine()}",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    machine.update({name: installed_version(name) for name in MODULES if name != "asyncio"})
    return machine


def differences(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """``key 'recorded' here 'current'`` for each recorded key whose value differs here."""
    return [
        f"{key} {recorded[key]!r} here {current.get(key, '-')!r}"
        for key in recorded
        if str(recorded[key]) != str(current.get(key, "-"))
    ]
