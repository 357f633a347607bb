"""How a server honours each ``server.*`` key, as data: its own options, a pyfly-hydra layer, or a refusal.

Every adapter keeps one table of these. The options pyfly-hydra sets itself (and so refuses under
``server.options.<name>``), the layers every worker wraps the app in, the ``mode=info`` matrix, the
configuration reference and the owner named when a native option collides with a key all derive from it;
a test sets each key and checks that the adapter passes exactly the options its row names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# What pyfly-hydra does itself where a server has no option, each layer once: in every worker, around
# the app (pyfly_hydra.worker), in its supervisor, or in a hook on the server's own internals.
LAYERS: dict[str, str] = {
    "AccessLog": "pyfly-hydra's access log (worker.access_log), one format on every server",
    "BodyLimit": "pyfly-hydra's body limit (worker.limits): 413 over the limit",
    "BodyTimeout": "pyfly-hydra's body timeout (worker.exchange): 408 when a body stalls",
    "HeadLimit": "pyfly-hydra's head limit on parsed heads (worker.limits): 431",
    "LifespanGuard": "pyfly-hydra's lifespan guard (worker.lifespan)",
    "ProxyHeaders": "pyfly-hydra's X-Forwarded-* middleware (worker.proxy_headers), every header line",
    "RootPath": "pyfly-hydra's root path (worker.root_path): the proxy strips the prefix, the app's path has it",
    "RequestId": "pyfly-hydra's X-Request-ID (worker.request_id): a valid one kept, else a new one; sent back",
    "Metrics": "pyfly-hydra's request counts in every worker (worker.metrics), served by the runner's admin listener",
    "Watchdog": "pyfly-hydra's watchdog (worker.watchdog): a worker whose event loop stops turning is replaced",
    "Supervisor": "pyfly-hydra's supervisor (supervision.supervisor): new worker before old",
    "Listener": "pyfly-hydra binds the socket (system.bind) and hands it to the server",
    "ServerHook": "a hook on the server's own internals (servers.<name>.server)",
}

# Notes several servers' rows share, logged once when the key is set.
NEW_BEFORE_OLD = "pyfly-hydra's supervisor, new worker before old"
ROOT_PATH_NOTE = "pyfly-hydra's wrapper: the proxy strips the prefix, the app's path has it"
PROXY_HEADERS_NOTE = "X-Forwarded-* applied by pyfly-hydra's ASGI middleware"


@dataclass(frozen=True)
class Support:
    """How a server honours one key: ``options`` of its own, a pyfly-hydra ``layer``, or ``refused`` (why).

    An option named ``a.b`` is field ``b`` of the server's option ``a``. ``native_values``: the values
    the server's options honour, the others going through ``layer`` (None: every value). ``note``: an
    approximation, logged once when the key is set.
    """

    options: tuple[str, ...] = ()
    layer: str | None = None
    refused: str | None = None
    note: str = ""
    native_values: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.layer is not None and self.layer not in LAYERS:
            raise ValueError(f"unknown layer {self.layer!r}; one of {', '.join(LAYERS)}")
        if (self.refused is None) == (not self.options and self.layer is None):
            raise ValueError("a key is honoured by options or a layer, or refused, never both nor neither")

    @property
    def honoured(self) -> bool:
        return self.refused is None

    def through_layer(self, value: Any) -> bool:
        """Whether ``value`` of this key is pyfly-hydra's layer's to honour (not the server's options)."""
        return self.layer is not None and (self.native_values is None or value not in self.native_values)

    def describe(self) -> str:
        """One cell of the ``mode=info`` matrix: the options and the layer, with ``~`` for a note."""
        if self.refused is not None:
            return "- (refused)"
        parts = [*self.options, *([self.layer] if self.layer else [])]
        return " + ".join(parts) + (" ~" if self.note else "")


def native(
    *options: str, note: str = "", layer: str | None = None, native_values: tuple[Any, ...] | None = None
) -> Support:
    """The server's own ``options`` honour the key (with a pyfly-hydra ``layer`` for the values they do not)."""
    return Support(options=options, note=note, layer=layer, native_values=native_values)


def pyfly(layer: str, *, note: str = "") -> Support:
    """pyfly-hydra's ``layer`` honours the key; the server is given nothing for it."""
    return Support(layer=layer, note=note)


def refused(reason: str) -> Support:
    """The server cannot honour the key: set, it is refused with ``reason``."""
    return Support(refused=reason)


def option_names(table: Mapping[str, Support]) -> frozenset[str]:
    """The server's own top-level options that ``table``'s keys set."""
    return frozenset(option.split(".")[0] for support in table.values() for option in support.options)


def owner_of(table: Mapping[str, Support], reserved: Mapping[str, str | None], option: str) -> str | None:
    """The key that decides the server's ``option`` (top-level): the row naming it, else the key a reserved
    option serves; None when pyfly-hydra sets it from no key."""
    named = next((key for key, s in table.items() if option in {o.split(".")[0] for o in s.options}), None)
    return named if named is not None else reserved.get(option)


def layers_asked(table: Mapping[str, Support], values: Iterable[tuple[str, Any]]) -> frozenset[str]:
    """The layers the set keys (``(key, value)`` pairs) need from pyfly-hydra on this server."""
    return frozenset(
        support.layer  # type: ignore[misc]
        for key, value in values
        if (support := table.get(key)) is not None and support.through_layer(value)
    )


def in_every_worker() -> dict[str, Support]:
    """The rows every built-in server shares: what pyfly-hydra's worker layers do the same way everywhere."""
    return {
        "root_path": pyfly("RootPath", note=ROOT_PATH_NOTE),
        "access_log": pyfly("AccessLog"),
        "access_log_format": pyfly("AccessLog"),
        "request_id": pyfly("RequestId"),
        "proxy_headers": pyfly("ProxyHeaders", note=PROXY_HEADERS_NOTE),
        "forwarded_allow_ips": pyfly("ProxyHeaders"),
        "worker_timeout": pyfly("Watchdog"),
        "metrics.port": pyfly("Metrics"),
        "metrics.host": pyfly("Metrics"),
    }


def supervised(own_limit: str) -> dict[str, Support]:
    """The rows of a server whose workers pyfly-hydra's supervisor runs (uvicorn's, hypercorn's): recycling and
    reload are the supervisor's; ``own_limit`` names the server's own request limit it replaces."""
    return {
        "max_requests_per_worker": pyfly(
            "Supervisor",
            note="pyfly-hydra's supervisor, after about N requests (+ up to 10%), new worker before old"
            f" ({own_limit} stops a worker before any replacement is up)",
        ),
        "worker_max_lifetime": pyfly("Supervisor", note=NEW_BEFORE_OLD),
        "worker_max_rss_mib": pyfly("Supervisor", note=NEW_BEFORE_OLD),
        "worker_rss_check_interval": pyfly("Supervisor"),
        **{key: pyfly("Supervisor") for key in ("reload", "reload_dirs", "reload_includes", "reload_excludes")},
        "roll_batch": pyfly("Supervisor"),
    }
