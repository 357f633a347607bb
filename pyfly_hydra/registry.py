"""The built-in servers and event loops, each written once: every list of them is derived from here.

The ``auto`` resolver's cascades and targets, ``mode=info``'s tables, the tuner's space, the servers'
loggers and the summaries' colours read these rows. A built-in server is its package under
``pyfly_hydra/servers``, its ``conf/server/<name>.yaml``, one row below, and its docs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinServer:
    """One server pyfly-hydra ships an adapter for."""

    name: str
    target: str  # the adapter class, as ``_target_``
    module: str  # what must be importable for it to count as installed
    reason: str  # why it ranks where it does in ``auto`` (mode=info)
    loggers: tuple[str, ...]  # the loggers its lines come on, set up like pyfly-hydra's own
    colour: str  # its bars in summary.png and summary.html


@dataclass(frozen=True)
class BuiltinLoop:
    """One event loop pyfly-hydra ships an adapter for."""

    name: str
    target: str
    module: str | None  # None: the standard library
    reason: str


# In ``auto``'s order of preference.
SERVERS: tuple[BuiltinServer, ...] = (
    BuiltinServer(
        name="granian",
        target="pyfly_hydra.servers.granian.adapter.GranianServer",
        module="granian",
        reason="Rust/tokio HTTP stack, the fastest of the three",
        loggers=("_granian",),
        colour="#2a9d8f",
    ),
    BuiltinServer(
        name="uvicorn",
        target="pyfly_hydra.servers.uvicorn.adapter.UvicornServer",
        module="uvicorn",
        reason="the ecosystem standard, fast with uvloop and httptools",
        loggers=("uvicorn", "uvicorn.error", "uvicorn.asgi"),
        colour="#e9c46a",
    ),
    BuiltinServer(
        name="hypercorn",
        target="pyfly_hydra.servers.hypercorn.adapter.HypercornServer",
        module="hypercorn",
        reason="pure Python, HTTP/2 everywhere, the slowest",
        loggers=("hypercorn.error",),
        colour="#e76f51",
    ),
)
LOOPS: tuple[BuiltinLoop, ...] = (
    BuiltinLoop("uvloop", "pyfly_hydra.loops.uvloop.UvloopLoop", "uvloop", "libuv loop, 2-4x the standard loop"),
    BuiltinLoop("winloop", "pyfly_hydra.loops.winloop.WinloopLoop", "winloop", "libuv loop for Windows"),
    BuiltinLoop(
        "asyncio", "pyfly_hydra.loops.asyncio.AsyncioLoop", None, "the standard library loop, always available"
    ),
    # Chosen by name only (in no cascade below).
    BuiltinLoop("rloop", "pyfly_hydra.loops.rloop.RloopLoop", "rloop", "Rust loop, experimental upstream"),
    BuiltinLoop("trio", "pyfly_hydra.loops.trio.TrioLoop", "trio", "structured concurrency, not asyncio"),
)
# ``auto``'s loop cascade on each kind of platform, best first.
LOOP_CASCADES: dict[str, tuple[str, ...]] = {
    "win32": ("winloop", "asyncio"),
    "posix": ("uvloop", "asyncio"),
}

SERVER_NAMES: tuple[str, ...] = tuple(server.name for server in SERVERS)
# ``_target_`` paths of releases before the adapters became packages (``servers/<name>/adapter.py``): a user's
# own server yaml may still name one, and is told the new path instead of Hydra's import error.
MOVED_TARGETS: dict[str, str] = {
    f"pyfly_hydra.servers.{server.name}.{server.target.rsplit('.', 1)[1]}": server.target for server in SERVERS
}
