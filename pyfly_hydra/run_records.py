"""Where a run's record goes: Hydra's ``outputs/`` in the working directory, unless it cannot be written.

``hydra.run.dir`` and ``hydra.sweep.dir`` go through ``${writable_dir:...}``: a relative directory whose
nearest existing parent is writable stays where Hydra's convention puts it; otherwise (a read-only
container image, a directory owned by someone else) the record moves below the system's temporary
directory and one notice line on stderr says where. ``mode=info`` writes no record at all
(``conf/mode/info.yaml``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

RESOLVER = "writable_dir"
_noticed: set[str] = set()


def _writable(path: Path) -> bool:
    """Whether ``path`` exists as a writable directory or could be created (its nearest parent is writable)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def fallback_dir(directory: str) -> Path:
    """Where a record that cannot go to ``directory`` goes instead."""
    user = getattr(os, "getuid", lambda: "user")()
    return Path(tempfile.gettempdir()) / f"pyfly-hydra-{user}" / directory.lstrip("/")


def writable_dir(directory: str) -> str:
    """``directory`` if a run can write there, else a fallback under the temporary directory (noticed once)."""
    path = Path(directory)
    if _writable(path.absolute()):
        return directory
    fallback = fallback_dir(directory)
    if directory not in _noticed:
        _noticed.add(directory)
        print(
            f"pyfly-hydra: notice: {path.absolute()} is not writable; this run's record goes to {fallback}"
            " (set hydra.run.dir to choose)",
            file=sys.stderr,
        )
    return str(fallback)


def register_run_records_resolver() -> None:
    """Register ``writable_dir`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, writable_dir, use_cache=True)
