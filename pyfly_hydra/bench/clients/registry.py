"""The table of load clients and how ``bench.client`` picks one."""

from __future__ import annotations

from pyfly_hydra.bench.clients.base import LoadClient
from pyfly_hydra.bench.clients.builtin import BuiltinClient
from pyfly_hydra.bench.clients.h2load import H2loadClient
from pyfly_hydra.bench.clients.h3 import H3Client
from pyfly_hydra.bench.clients.wrk import WrkClient
from pyfly_hydra.bench.workload import Workload
from pyfly_hydra.errors import ConfigError

CLIENTS: dict[str, type[LoadClient]] = {
    "wrk": WrkClient, "h2load": H2loadClient, "builtin": BuiltinClient, "h3": H3Client,
}  # fmt: skip
HTTP3_CLIENT = "h3"  # the only one that speaks HTTP/3 (server.http=3), and it speaks nothing else
# bench.client=auto: the first available, per protocol.
AUTO_ORDER: dict[bool, tuple[str, ...]] = {False: ("wrk", "builtin"), True: ("h2load",)}
INSTALL_HINTS: dict[str, str] = {
    "wrk": "apt-get install wrk",
    "h2load": "apt-get install nghttp2-client",
    "builtin": "it ships with pyfly-hydra",
    "h3": "pip install 'pyfly-hydra[h3]'",
}


def check_protocol(name: str, *, http3: bool) -> None:
    """``bench.client=name`` against HTTP/3 (``server.http=3``): only the h3 client speaks it, and nothing else."""
    if http3 and name not in ("auto", HTTP3_CLIENT):
        allowed = f"server.http=3 is measured over HTTP/3, which only bench.client={HTTP3_CLIENT} speaks (or auto)"
        raise ConfigError("bench.client", name, allowed)
    if name == HTTP3_CLIENT and not http3:
        raise ConfigError("bench.client", name, "speaks HTTP/3 only: use it with server=hypercorn server.http=3")


def select_client(
    name: str,
    *,
    http2: bool,
    http3: bool = False,
    capped: bool = False,
    workload: Workload | None = None,
    open_loop: bool = False,
) -> LoadClient:
    """The client for ``bench.client=name``: ``http2`` for an HTTP/2-only server, ``http3`` to measure HTTP/3,
    ``capped`` for bench.requests, ``workload`` what it must send and check, ``open_loop`` for bench.rate and
    bench.slo_p99_ms."""
    needs = {"caps_requests": capped, "open_loop": open_loop}
    check_protocol(name, http3=http3)
    if http3:
        if open_loop:
            raise ConfigError(
                "bench.client", name, f"{HTTP3_CLIENT} runs closed loop only, and bench.rate and bench.slo_p99_ms need"
                " an open loop: no open-loop HTTP/3 client here; measure them over server.http=1 or 2",
            )  # fmt: skip
        name = HTTP3_CLIENT
    if name == "auto":
        for candidate in AUTO_ORDER[http2]:
            client = CLIENTS[candidate]()
            if (
                client.available()
                and all(getattr(client, need) for need, wanted in needs.items() if wanted)
                and (workload is None or client.workload_refusal(workload) is None)
            ):
                return client
        refusal = CLIENTS["h2load"]().workload_refusal(workload) if workload else None
        if http2 and refusal:
            raise ConfigError("bench/workload", workload.name if workload else None, refusal)
        if http2 and open_loop:
            raise ConfigError("bench.client", name, _NO_OPEN_LOOP.format(client="h2load (HTTP/2)"))
        raise ConfigError("bench.client", name, f"server.http=2 needs h2load ({INSTALL_HINTS['h2load']})")
    if name not in CLIENTS:
        raise ConfigError("bench.client", name, f"must be one of auto, {', '.join(CLIENTS)}")
    client = CLIENTS[name]()
    # What the client cannot do is said first: installing it would not help.
    if http2 and not client.http2:
        raise ConfigError("bench.client", name, "server.http=2 serves HTTP/2 only; use bench.client=h2load")
    if capped and not client.caps_requests:
        raise ConfigError("bench.client", name, "cannot stop after bench.requests; use builtin or h2load, or unset it")
    refusal = client.workload_refusal(workload) if workload else None
    if refusal:
        raise ConfigError("bench.client", name, f"workload {workload.name if workload else ''}: {refusal}")
    if open_loop and not client.open_loop:
        raise ConfigError("bench.client", name, _NO_OPEN_LOOP.format(client=name))
    if not client.available():
        raise ConfigError("bench.client", name, f"{name} is not installed ({INSTALL_HINTS[name]})")
    return client


_NO_OPEN_LOOP = (
    "{client} runs closed loop only (the next request waits for the last answer), and bench.rate and"
    " bench.slo_p99_ms need an open loop; use bench.client=builtin"
)
