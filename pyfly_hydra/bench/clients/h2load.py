"""h2load: the HTTP/2 load generator (nghttp2), with percentiles computed from its per-request log."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

from pyfly_hydra.bench.clients.base import LoadResult, LoadSpec, ProgressCallback, percentile
from pyfly_hydra.bench.clients.external import LoadError, last_line, run_tool
from pyfly_hydra.bench.workload import Workload

_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored,"
    r" (\d+) timeout",
    re.MULTILINE,
)
SECONDS: dict[str, float] = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
MAX_URLS = 100  # a workload's paths, repeated by weight, for h2load to cycle through


def parse_h2load(output: str, log: str, *, client_cpu: float, threads: int, expect: int | None = None) -> LoadResult:
    """A LoadResult from h2load's report and its ``--log-file`` (start µs, status, duration µs per line).
    ``expect``: the status every answer must have (None: h2load's own count of failures, non-2xx/3xx)."""
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    if finished is None or requests is None:
        raise LoadError(f"h2load printed no report: {last_line(output)}")
    entries = [line.split("\t") for line in log.splitlines() if line.count("\t") == 2]
    latencies = sorted(int(entry[2]) / 1e3 for entry in entries)
    done, failed = int(requests.group(3)), int(requests.group(5))
    if expect is not None:  # answers with another status, and requests that ended without one
        failed = sum(1 for entry in entries if int(entry[1]) != expect) + max(0, done - len(entries))
    if done == 0:
        raise LoadError(f"h2load completed no request ({failed} failed): {last_line(output)}")
    return LoadResult(
        client="h2load",
        requests=done,
        errors=failed,  # h2load's "failed": non-2xx/3xx responses, errors and timeouts
        duration=float(finished.group(1)) * SECONDS[finished.group(2)],
        rps=float(finished.group(3)),
        p50_ms=percentile(latencies, 0.50),
        p90_ms=percentile(latencies, 0.90),
        p99_ms=percentile(latencies, 0.99),
        client_cpu=client_cpu,
        client_threads=threads,
    )


class H2loadClient:
    """HTTP/2 load with h2load: one stream in flight per connection, like the HTTP/1.1 clients."""

    name: ClassVar[str] = "h2load"
    http2: ClassVar[bool] = True
    caps_requests: ClassVar[bool] = True
    open_loop: ClassVar[bool] = False
    reconnects: ClassVar[bool] = False  # a connection the server ends (GOAWAY) stops its client for the run

    def available(self) -> bool:
        """True when ``h2load`` is on PATH."""
        return shutil.which("h2load") is not None

    def workload_refusal(self, workload: Workload) -> str | None:
        """h2load sends GETs of a list of URLs (round robin) and is checked against one expected status."""
        if not all(kind.plain_get for kind in workload.kinds):
            return "h2load sends plain GETs only (no method, headers or body); use server.http=1 and builtin or wrk"
        if len({kind.expect for kind in workload.kinds}) > 1:
            return "h2load's log does not say which request an answer was for, so all must expect the same status"
        return None

    def command(self, spec: LoadSpec, log: Path) -> list[str]:
        """The h2load command line for ``spec``: ``-n`` with a request cap, else ``-D`` seconds; a workload's
        paths as URLs, each repeated in proportion to its weight (h2load takes them round robin)."""
        limit = ["-n", str(spec.requests)] if spec.requests is not None else ["-D", f"{round(spec.duration * 1000)}ms"]
        connections = ["-c", str(spec.connections), "-t", str(spec.client_threads), "-m", "1"]
        return ["h2load", *connections, *limit, "--log-file", str(log), *weighted_urls(spec)]

    def run(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> LoadResult:
        """Run h2load and parse its report and log (no live count: ``on_progress`` is never called)."""
        with tempfile.TemporaryDirectory(prefix="pyfly-h2load-") as directory:
            log = Path(directory) / "requests.log"
            run = run_tool(self.command(spec, log), timeout=spec.duration)
            log_text = log.read_text() if log.exists() else ""
        if run.returncode != 0:
            raise LoadError(f"h2load failed (exit {run.returncode}): {last_line(run.stderr + run.stdout)}")
        expect = spec.workload.kinds[0].expect if spec.workload else None
        return parse_h2load(run.stdout, log_text, client_cpu=run.cpu_cores, threads=spec.client_threads, expect=expect)


def weighted_urls(spec: LoadSpec) -> list[str]:
    """The URLs h2load cycles through: the URL itself, or each path of the workload (on the URL's origin)
    ``round(weight / lightest)`` times (at most ``MAX_URLS`` in all, the weights scaled down to fit)."""
    if spec.workload is None:
        return [spec.url]
    origin = spec.url.split("/", 3)[:3]
    weights = [kind.weight for kind in spec.workload.kinds]
    scale = min(weights) * max(1.0, sum(weights) / min(weights) / MAX_URLS)
    return [
        "/".join(origin) + kind.path for kind in spec.workload.kinds for _ in range(max(1, round(kind.weight / scale)))
    ]
