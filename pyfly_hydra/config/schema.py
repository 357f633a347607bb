"""The structured-config schema: every key pyfly-hydra reads, with its type and default.

Registered in Hydra's ConfigStore as ``pyfly_hydra_schema`` and named first in ``conf/config.yaml``'s
defaults, so a value of the wrong type or a misspelled key fails at compose time, naming the key.

Each key's one-line description is written here once, as a comment: the comment at the end of the
key's line, or, when the line has no room for it, ``#:`` comment lines directly above the key. The
manual's configuration reference (``docs/hooks/reference.py``, built by ``make docs``) reads them with
``tokenize``, and its build fails on a key without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class GranianProperties:
    """Granian-only tuning (``server.granian.*``); a non-default value on another server is an error."""

    runtime_threads: int = 1  # threads of granian's Rust runtime in each worker
    runtime_mode: str = "auto"  # auto | st (single-threaded runtime) | mt (multi-threaded)
    backpressure: int | None = None  # requests a worker queues at most; exclusive with max_concurrent_connections
    respawn_failed_workers: bool = True  # replace a worker that dies (false: any worker death stops granian)


@dataclass
class WebsocketProperties:
    """``server.websocket.*``: null keeps the server's own default."""

    ping_interval: float | None = None  # seconds between the server's pings on an open websocket
    ping_timeout: float | None = None  # seconds to wait for the pong before closing
    max_size: int | None = None  # bytes; a larger message closes the websocket with 1009


@dataclass
class MetricsProperties:
    """``server.metrics.*``: the admin listener, never on the app's port (/metrics, /healthz, /readyz)."""

    port: int | None = None  # the admin listener's TCP port; null: no listener, no request counting
    host: str = "127.0.0.1"  # the address it listens on (0.0.0.0 for a scraper on another host)


@dataclass
class ServerProperties:
    """What every server adapter is built from (``server.*``)."""

    host: str = "127.0.0.1"  # the address to listen on; only env=prod sets 0.0.0.0
    port: int = 8000  # the TCP port; one already in use is refused before the server starts
    workers: int = 1  # worker processes; 0 = one per usable CPU (a container's CPU quota counts)
    uds: str | None = None  # listen on this unix domain socket path instead of host:port
    uds_permissions: str | None = None  # octal mode of the socket file, e.g. "660"; null: the umask decides
    uds_group: str | None = None  # the socket file's group (name or gid), e.g. www-data for nginx; null: ours
    fd: int | None = None  # serve on this inherited listening socket (systemd socket activation: 3)
    backlog: int = 1024  # the listen queue's length
    graceful_timeout: int = 30  # seconds in-flight requests get to finish after SIGINT/SIGTERM
    http: str = "auto"  # auto | 1 | 2 | 3: the HTTP version(s) served (uvicorn: 1 only; 3: hypercorn, QUIC over TLS)
    ssl_certfile: str | None = None  # PEM certificate (chain) file: TLS on; needs ssl_keyfile
    ssl_keyfile: str | None = None  # PEM private key file; needs ssl_certfile
    keep_alive_timeout: int = 5  # seconds an idle connection is kept open, and a request head may take
    max_concurrent_connections: int | None = None  # beyond it uvicorn answers 503, granian queues; null: no limit
    max_requests_per_worker: int | None = None  # a worker is replaced after about this many requests; null: never
    worker_max_lifetime: int | None = None  # seconds; a worker is replaced after this (+ up to 10% jitter)
    worker_max_rss_mib: int | None = None  # a worker whose resident memory exceeds this many MiB is replaced
    worker_rss_check_interval: int = 30  # seconds between memory checks (with worker_max_rss_mib)
    roll_batch: int = 1  # workers a SIGHUP replaces at once, new ones serving before the old ones drain
    worker_timeout: int | None = 30  # seconds a worker's loop may stand still before it is replaced; null: never
    max_header_bytes: int | None = None  # a request head above this is refused (431); null: the server's own limit
    max_body_bytes: int | None = None  # a request body above this is refused (413); null: no limit
    body_timeout: int | None = 60  # seconds a request body may go without a byte (408); null: forever
    root_path: str = ""  # the path prefix a proxy mounts the app under, e.g. /api (the app sees scope["root_path"])
    lifespan: str = "auto"  # auto | on | off (ASGI lifespan events; auto: run them if the app speaks them)
    reload: bool = False  # restart the workers when the app's sources change (needs workers=1)
    reload_dirs: list[str] = field(default_factory=list)  # what reload watches; empty = the current dir and app_dir
    reload_includes: list[str] = field(default_factory=lambda: ["*.py"])  # file-name patterns that trigger it
    reload_excludes: list[str] = field(default_factory=list)  # file or directory name patterns it ignores
    access_log: bool = False  # one line per request (off, as granian and hypercorn ship: it costs throughput)
    #: the access line's format over {fields} (docs/guides/logging.md), e.g.
    #: '{method} {path} {status} {request.user-agent} {request_id}'; null: the default line
    access_log_format: str | None = None
    request_id: bool = False  # X-Request-ID on every request: a valid incoming one kept, else a new one; sent back
    log_level: str = "info"  # critical | error | warning | info | debug, for pyfly-hydra's and the server's loggers
    proxy_headers: bool = False  # trust X-Forwarded-For/-Proto, only from forwarded_allow_ips
    forwarded_allow_ips: str = "127.0.0.1"  # comma-separated addresses, networks, unix: (a unix socket peer), or "*"
    granian: GranianProperties = field(default_factory=GranianProperties)
    websocket: WebsocketProperties = field(default_factory=WebsocketProperties)
    metrics: MetricsProperties = field(default_factory=MetricsProperties)
    #: server.options.<server>.NAME: any keyword of the chosen server's own constructor (granian.Granian,
    #: uvicorn.Config, hypercorn's Config, your own adapter's), added with a +; mode=info lists the names
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ServerConfig(ServerProperties):
    """``server``: the adapter class to instantiate plus its properties."""

    _target_: str = MISSING  # the adapter class, set by the server group (server=auto: ${auto:server})


@dataclass
class LoopConfig:
    """``loop``: the event-loop adapter class to instantiate."""

    _target_: str = MISSING  # the loop adapter class, set by the loop group (loop=auto: ${auto:loop})


@dataclass
class WorkloadRequest:
    """One kind of request of a workload (``bench.workload.requests[i]``)."""

    name: str = MISSING  # how the kind is reported in bench.json
    method: str = "GET"  # the HTTP method
    path: str = MISSING  # with an optional ?query
    headers: dict[str, str] = field(default_factory=dict)  # request headers, name: value
    body: str | None = None  # the body as text
    body_file: str | None = None  # or read from this file (relative to the directory you run from)
    body_size: int | None = None  # or this many bytes of filler
    weight: float = 1.0  # its share of the mix, relative to the others
    expect: int | None = 200  # the status a correct answer has; null: any 2xx or 3xx


@dataclass
class WorkloadConfig:
    """``bench.workload``: what the load client sends (the ``bench/workload`` group, or your own file)."""

    name: str = "plaintext"  # the workload's name, as bench.json and the summaries report it
    #: the kinds of request, drawn by weight (see bench.workload.requests[].*)
    requests: list[WorkloadRequest] = field(default_factory=lambda: [WorkloadRequest(name="plaintext", path="/")])


@dataclass
class CapacitySearch:
    """``bench.capacity.*``: how the search under ``bench.slo_p99_ms`` spends its time."""

    step_seconds: float = 3.0  # each rate tried is one open-loop run this long
    budget_seconds: float = 60.0  # the search's steps stop before overrunning this


@dataclass
class BenchConfig:
    """``bench.*``: how ``mode=bench`` drives load against the configured server."""

    duration: float = 10.0  # seconds of measured load
    warmup: float = 2.0  # seconds of load before measuring, discarded
    connections: int = 64  # concurrent keep-alive connections, one request in flight each
    threads: int = 1  # client threads (wrk -t, h2load -t); the builtin client always uses 1
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    path: str | None = None  # a shortcut: one GET of this path (with an optional ?query) instead of the workload
    requests: int | None = None  # stop after this many responses (duration then caps the run)
    rate: float | None = None  # open loop: send this many requests/s on a schedule (builtin client); null: closed
    slo_p99_ms: float | None = None  # find the highest rate whose p99 stays within this (bench.json "capacity")
    capacity: CapacitySearch = field(default_factory=CapacitySearch)
    client: str = "auto"  # auto | wrk | h2load | builtin | h3 (server.http=3): the load generator
    metric: str = "rps"  # what the job returns to sweepers: rps | p50_ms | p90_ms | p99_ms | capacity
    server_cpus: str | None = None  # pin the server to these CPUs, e.g. "0" or "0-1"
    client_cpus: str | None = None  # pin the load client to these CPUs, e.g. "1"
    client_processes: int | None = None  # builtin client: processes driving the load; null: one per client_cpus CPU
    ready_timeout: float = 30.0  # seconds the server gets to answer its first request
    rounds: int = 1  # in a sweep (-m): measure every configuration this many times, rounds interleaved
    round: int = 1  # which round this job is (set by the sweep from bench.rounds)


@dataclass
class Config:
    """The whole configuration."""

    app: str = "pyfly_hydra.demo:app"  # the app as an import string module:attribute, imported from app_dir first
    app_dir: str = "."  # put first on sys.path to import the app (uvicorn's --app-dir); src for a src/ layout
    app_factory: bool = False  # true: the attribute is a callable that returns the app
    interface: str = "auto"  # auto | asgi | wsgi (auto: told from the app object)
    env_file: str | None = None  # a .env file setting variables not set yet, read first (relative to where you run)
    mode: str = "serve"  # serve | info | bench, set by the mode group
    server: ServerConfig = field(default_factory=ServerConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    #: set by a promoted environment (pyfly-hydra-promote): where its settings were measured, and on what machine
    provenance: dict[str, Any] | None = None


SCHEMA_NAME = "pyfly_hydra_schema"


def register_schema() -> None:
    """Store the schema so ``conf/config.yaml`` can name it in its defaults list."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)
