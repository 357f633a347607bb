"""The load-client interface: what to drive (LoadSpec) and what came back (LoadResult)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from pyfly_hydra.bench.workload import Workload

# Called now and then with (seconds elapsed, responses completed so far), for a live display.
ProgressCallback = Callable[[float, int], None]
PROGRESS_INTERVAL = 0.5  # seconds between on_progress calls
# A client is the bottleneck when it used at least this share of the CPU time its threads could use.
SATURATION_SHARE = 0.9
# The builtin closed-loop client is one Python thread serving every connection in turn: busy half the
# time, it already delays the responses it must read, and so the next requests. Measured against wrk
# (64 connections, granian on the other CPU, 2026-12-03): 0.80-0.91 of wrk's rate at 0.48-0.56 of a core.
BUILTIN_SATURATION_SHARE = 0.45


@dataclass(frozen=True)
class LoadSpec:
    """One load run against ``url``: for ``duration`` seconds, or until ``requests`` responses if set."""

    url: str  # e.g. http://127.0.0.1:8123/ (https works too)
    duration: float
    connections: int
    threads: int = 1
    requests: int | None = None
    workload: Workload | None = None  # what to send; None: a GET of the URL's path (any 2xx/3xx correct)
    rate: float | None = None  # open loop: send this many requests/s on a fixed schedule; None: closed loop

    @property
    def client_threads(self) -> int:
        """The threads a client really runs: ``threads``, but no more than one per connection."""
        return min(self.threads, self.connections)


@dataclass(frozen=True)
class KindResult:
    """What a client measured for one kind of request of a workload."""

    name: str
    requests: int  # completed responses (wrk: requests sent)
    errors: int | None  # responses whose status was not the expected one (None: the client cannot attribute them)
    p50_ms: float = math.nan
    p99_ms: float = math.nan


@dataclass(frozen=True)
class LoadResult:
    """What a client measured. Latencies in milliseconds; ``client_cpu`` in cores used (1.0 = one core)."""

    client: str
    requests: int  # completed responses (any status)
    errors: int  # connection/read/write/timeout errors plus non-2xx/3xx responses
    duration: float  # seconds the load actually ran
    rps: float  # completed responses per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    client_cpu: float
    client_threads: int
    kinds: tuple[KindResult, ...] = ()  # per request kind, from clients that can tell them apart
    p999_ms: float = math.nan
    max_ms: float = math.nan
    rate: float | None = None  # open loop: the intended requests/s
    late_sends: int | None = None  # open loop: sends that left more than LATE_SLACK after their intended time
    saturation_share: float = SATURATION_SHARE  # the CPU share from which this client limits the rate
    client_waited: float = 0.0  # in cores: runnable but waiting for a CPU another process held
    process_loads: tuple[float, ...] = ()  # a client in several processes: each one's CPU, used or waited for, in cores

    @property
    def saturated(self) -> bool:
        """True when the client itself, not the server, limited the rate: it used, or wanted and waited for
        on a busy machine, the CPU share from which it cannot keep up (in any one of its processes)."""
        if self.process_loads:
            return any(load >= self.saturation_share for load in self.process_loads)
        return self.client_cpu + self.client_waited >= self.saturation_share * self.client_threads


class LoadClient(Protocol):
    """A load generator."""

    name: ClassVar[str]
    http2: ClassVar[bool]  # speaks HTTP/2 (prior knowledge or ALPN) instead of HTTP/1.1
    caps_requests: ClassVar[bool]  # can stop after LoadSpec.requests responses
    open_loop: ClassVar[bool]  # can send at LoadSpec.rate on a schedule, timing latency from each intended send
    reconnects: ClassVar[bool]  # opens a new connection when the server closes one (else that connection is lost)

    def available(self) -> bool:
        """True when the client can run on this machine."""
        ...

    def workload_refusal(self, workload: Workload) -> str | None:
        """Why this client cannot send ``workload`` and check its answers (None: it can)."""
        ...

    def run(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> LoadResult:
        """Drive the load and measure it; clients that can count live report through ``on_progress``."""
        ...


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of already sorted values (``share`` in 0..1); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


SCHEDSTAT = Path("/proc/thread-self/schedstat")  # Linux: ns on a CPU, ns runnable but waiting, slices


def run_queue_wait() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (0.0 where the kernel does not say)."""
    try:
        return int(SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
