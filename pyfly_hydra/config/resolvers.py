"""The ``auto`` resolver: picks the best installed server or event loop from priority tables.

``${auto:server}`` and ``${auto:loop}`` resolve to the ``_target_`` of the chosen adapter class;
``${auto:loop,win32}`` resolves for another platform, so the Windows cascade is testable anywhere.
Availability is decided with ``importlib.util.find_spec``: nothing heavy is imported to decide.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from omegaconf import OmegaConf

from pyfly_hydra.errors import ConfigError
from pyfly_hydra.registry import LOOP_CASCADES, LOOPS, SERVER_NAMES, SERVERS

SERVER_TARGETS: dict[str, str] = {server.name: server.target for server in SERVERS}
LOOP_TARGETS: dict[str, str] = {loop.name: loop.target for loop in LOOPS}
# What must be importable for each choice (None: part of the standard library).
MODULES: dict[str, str | None] = {
    **{server.name: server.module for server in SERVERS},
    **{loop.name: loop.module for loop in LOOPS},
}
SERVER_PRIORITY: tuple[str, ...] = SERVER_NAMES
LOOP_PRIORITY: dict[str, tuple[str, ...]] = LOOP_CASCADES
# Why one choice beats the next, for `mode=info`.
REASONS: dict[str, str] = {**{s.name: s.reason for s in SERVERS}, **{loop.name: loop.reason for loop in LOOPS}}


@dataclass(frozen=True)
class Candidate:
    """One entry of a cascade: a name, whether it is installed, and whether it was chosen."""

    name: str
    installed: bool
    chosen: bool


def module_available(module: str | None) -> bool:
    """True when ``module`` can be imported (None: the standard library), found without importing it."""
    return module is None or importlib.util.find_spec(module) is not None


def is_installed(name: str) -> bool:
    """True when the module behind ``name`` (a server or loop name) can be imported."""
    return module_available(MODULES.get(name, name))


def loop_priority(platform: str) -> tuple[str, ...]:
    """The loop cascade for a ``sys.platform`` value."""
    return LOOP_PRIORITY["win32" if platform == "win32" else "posix"]


def cascade(kind: str, platform: str | None = None) -> list[Candidate]:
    """Every candidate of the ``server`` or ``loop`` cascade, in priority order, the chosen one marked."""
    if kind == "server":
        names = SERVER_PRIORITY
    elif kind == "loop":
        names = loop_priority(platform or sys.platform)
    else:
        raise ConfigError("auto", kind, "the auto resolver takes 'server' or 'loop'")
    candidates: list[Candidate] = []
    chosen = False
    for name in names:
        installed = is_installed(name)
        candidates.append(Candidate(name=name, installed=installed, chosen=installed and not chosen))
        chosen = chosen or installed
    return candidates


def pick(kind: str, platform: str | None = None) -> str:
    """The name of the best installed server or loop."""
    for candidate in cascade(kind, platform):
        if candidate.chosen:
            return candidate.name
    extras = ", ".join(f"pyfly-hydra[{name}]" for name in SERVER_PRIORITY)
    raise ConfigError("server", "auto", f"no ASGI server is installed; install one of {extras}")


def resolve_auto(kind: str, platform: str | None = None) -> str:
    """The ``auto`` resolver: the ``_target_`` of the best installed adapter."""
    name = pick(kind, platform)
    return SERVER_TARGETS[name] if kind == "server" else LOOP_TARGETS[name]


def register_resolvers() -> None:
    """Register ``auto`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver("auto"):
        OmegaConf.register_new_resolver("auto", resolve_auto)
