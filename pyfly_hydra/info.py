"""``mode=info``: installed servers and loops, what ``auto`` picks and why, and the support matrix."""

from __future__ import annotations

import platform as platform_module
import sys
import textwrap
from collections.abc import Mapping, Sequence

from pyfly_hydra import __version__
from pyfly_hydra.config.environment import CONVENTIONS, PREFIX, SEPARATOR, FromEnvironment
from pyfly_hydra.config.properties import key_values
from pyfly_hydra.config.resolvers import (
    LOOP_PRIORITY,
    LOOP_TARGETS,
    REASONS,
    Candidate,
    cascade,
    is_installed,
    module_available,
)
from pyfly_hydra.config.schema import ServerProperties
from pyfly_hydra.config.versions import declared_range, is_declared
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.registry import SERVERS
from pyfly_hydra.runner.machine import installed_version
from pyfly_hydra.runner.serve import adapter_class
from pyfly_hydra.servers.base import ServerAdapter
from pyfly_hydra.servers.keys import LAYERS

SERVER_ADAPTERS: tuple[type[ServerAdapter], ...] = tuple(adapter_class("server", s.target) for s in SERVERS)


def own_server_lines(targets: Mapping[str, str]) -> tuple[list[str], list[type[ServerAdapter]]]:
    """The user's own servers (``server/<name>.yaml`` of their config dirs): a line each, and the adapters
    the matrix and the native options show (those built on ``servers.base.ServerAdapter``)."""
    lines, adapters = ["Your own servers (server=<name>, from your config directories):"], []
    for name, target in targets.items():
        try:
            found = adapter_class("server", target)
        except ConfigError as error:
            lines.append(f"  {name:<10} {error}")
            continue
        if not issubclass(found, ServerAdapter):
            lines.append(f"  {name:<10} {target} (not built on pyfly_hydra.servers.base.ServerAdapter: no key table)")
            continue
        state = "installed" if module_available(found.module) else "not installed"
        lines.append(f"  {name:<10} {installed_version(found.module):<28} {state:<14} {target}")
        adapters.append(found)
    return (lines if targets else []), adapters


def _cascade_lines(candidates: list[Candidate]) -> list[str]:
    lines = []
    for candidate in candidates:
        state = "installed" if candidate.installed else "not installed"
        mark = "<- auto" if candidate.chosen else ""
        version = installed_version(candidate.name)
        lines.append(f"  {candidate.name:<10} {version:<28} {state:<14} {mark:<8} {REASONS[candidate.name]}")
        tested = declared_range(candidate.name)
        if tested is not None:
            verdict = "" if version == "-" or is_declared(candidate.name, version) else "  NOT TESTED: this version"
            lines.append(f"  {'':<10} tested: {candidate.name}{tested}{verdict}")
    return lines


def loops_run_lines(adapters: Sequence[type[ServerAdapter]]) -> list[str]:
    """Each server's loops (``loops``), and whether it runs any other asyncio loop from its factory."""
    lines = []
    for adapter in adapters:
        factories = ", and any asyncio loop from its factory" if adapter.runs_loop_factories else ""
        lines.append(f"  {adapter.name:<10} {', '.join(adapter.loops)}{factories}")
    return lines


def _why(kind: str, candidates: list[Candidate]) -> str:
    chosen = next((c for c in candidates if c.chosen), None)
    if chosen is None:
        return f"auto {kind}: nothing installed"
    skipped = [c.name for c in candidates[: candidates.index(chosen)]]
    reason = f" ({', '.join(skipped)} not installed)" if skipped else " (first in priority order)"
    return f"auto {kind} = {chosen.name}{reason}"


def support_matrix(adapters: Sequence[type[ServerAdapter]] = SERVER_ADAPTERS) -> list[str]:
    """Which server honours which ``server.*`` key: its own options, or the pyfly-hydra layer that does it."""
    keys = list(key_values(ServerProperties()))
    rows: list[list[str]] = [["key", *(a.name for a in adapters)]]
    rows += [[f"server.{key}", *(a.key_support(key).describe() for a in adapters)] for key in keys]
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]))]
    lines = [
        "  " + "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    notes = [
        f"  {'-' if support.refused else '~'} {adapter.name} server.{key}: {support.refused or support.note}"
        for adapter in adapters
        for key, support in adapter.support.items()
        if support.note or support.refused
    ]
    layers = [f"  {name}: {meaning}" for name, meaning in LAYERS.items()]
    return [*lines, "", *notes, "", "pyfly-hydra's layers named above:", *layers]


def _client_lines() -> list[str]:
    from pyfly_hydra.bench.clients.registry import CLIENTS, INSTALL_HINTS

    lines = ["Load clients for mode=bench (auto: h2load for server.http=2, otherwise wrk, then builtin):"]
    for name, client in CLIENTS.items():
        state = "available" if client().available() else f"not installed ({INSTALL_HINTS[name]})"
        lines.append(f"  {name:<10} {state}")
    return lines


def native_option_lines(adapters: Sequence[type[ServerAdapter]] = SERVER_ADAPTERS, width: int = 100) -> list[str]:
    """Per installed server, the names ``+server.options.<server>.NAME=...`` accepts."""
    lines = [
        "Each server's own options (+server.options.<server>.NAME=VALUE; the ones pyfly-hydra sets from",
        "server.* keys are left out):",
    ]
    for adapter in adapters:
        if not module_available(adapter.module):
            lines.append(f"  {adapter.name}: not installed")
            continue
        names = textwrap.wrap(", ".join(adapter.native_option_names()), width=width - 4)
        lines += [f"  {adapter.name} ({adapter.native_constructor.replace(':', '.')}):", *(f"    {n}" for n in names)]
    return lines


def environment_lines(from_environment: Sequence[FromEnvironment]) -> list[str]:
    """The overrides this run took from the environment, one a line, or a line saying there are none."""
    read = f"{PREFIX}<KEY> ({SEPARATOR} for a dot), {', '.join(CONVENTIONS)}; the command line wins"
    lines = [f"  {override}" for override in from_environment] or ["  none"]
    return [f"From the environment ({read}):", *lines]


def render_info(
    platform: str | None = None,
    own_servers: Mapping[str, str] | None = None,
    from_environment: Sequence[FromEnvironment] = (),
) -> str:
    """The whole ``mode=info`` report; ``own_servers``: the user's own, name -> ``_target_``; ``from_environment``:
    the overrides the environment made."""
    platform = platform or sys.platform
    own_lines, own_adapters = own_server_lines(own_servers or {})
    adapters = [*SERVER_ADAPTERS, *own_adapters]
    servers = cascade("server")
    loops = cascade("loop", platform)
    in_cascades = {name for names in LOOP_PRIORITY.values() for name in names}
    other_loops = [name for name in in_cascades if name not in {c.name for c in loops}]
    by_name = [Candidate(name, is_installed(name), chosen=False) for name in LOOP_TARGETS if name not in in_cascades]
    lines = [
        f"pyfly-hydra {__version__} on Python {platform_module.python_version()} ({platform})",
        "",
        *environment_lines(from_environment),
        "",
        "Servers, in auto's priority order:",
        *_cascade_lines(servers),
        *own_lines,
        "",
        f"Event loops on {platform}, in auto's priority order:",
        *_cascade_lines(loops),
    ]
    if other_loops:
        lines.append(f"  (not for {platform}: {', '.join(sorted(other_loops))})")
    lines += [
        "Event loops chosen by name only (loop=NAME; auto never picks them):",
        *_cascade_lines(by_name),
        "Loops each server runs:",
        *loops_run_lines(adapters),
        "",
        _why("server", servers),
        _why("loop", loops),
        "",
        *_client_lines(),
        "",
        "Property support: the server's own option for each key; '- (refused)' fails with an error,",
        "'~' marks an approximation that is logged when the key is set.",
        *support_matrix(adapters),
        "",
        *native_option_lines(adapters),
    ]
    return "\n".join(lines)
