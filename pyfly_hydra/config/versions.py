"""The versions pyfly-hydra declares for each server and loop, read back from its own package metadata.

``pyproject.toml`` is where the ranges are written (a floor tested in CI, and an upper bound where
pyfly-hydra replaces a server's private internals); ``mode=info`` and the adapters' hook checks quote
them from the installed metadata instead of a second copy.
"""

from __future__ import annotations

import functools
import importlib.metadata

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

DISTRIBUTION = "pyfly-hydra"


@functools.cache
def declared_ranges() -> dict[str, str]:
    """Each dependency pyfly-hydra declares (any extra) -> its version range, e.g. ``granian: >=2.6,<2.9``."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree without an install
        return {}
    ranges: dict[str, str] = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.specifier:
            floor_first = sorted(requirement.specifier, key=lambda s: not s.operator.startswith(">"))
            ranges.setdefault(requirement.name.lower(), ",".join(str(s) for s in floor_first))
    return ranges


def declared_range(distribution: str) -> str | None:
    """The range pyfly-hydra declares for ``distribution``, or ``None``."""
    return declared_ranges().get(distribution.lower())


def is_declared(distribution: str, version: str) -> bool:
    """Whether ``version`` of ``distribution`` is in the declared (tested) range; True when none is declared."""
    declared = declared_range(distribution)
    if declared is None:
        return True
    try:
        return Version(version) in Requirement(f"{distribution}{declared}").specifier
    except InvalidVersion:
        return False
