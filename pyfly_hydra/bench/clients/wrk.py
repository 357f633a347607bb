"""wrk: the HTTP/1.1 load generator, parsed from its ``--latency`` report."""

from __future__ import annotations

import re
import shutil
from typing import ClassVar

from pyfly_hydra.bench.clients.base import LoadResult, LoadSpec, ProgressCallback
from pyfly_hydra.bench.clients.external import LoadError, last_line, run_tool

# wrk prints times with these units; values in milliseconds.
TIME_UNITS_MS: dict[str, float] = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_TIME = r"([\d.]+)(us|ms|s|m|h)"
_REQUESTS = re.compile(rf"^\s*(\d+) requests in {_TIME}", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_PERCENTILE = re.compile(rf"^\s+(50|90|99)(?:\.0+)?%\s+{_TIME}\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def _ms(value: str, unit: str) -> float:
    return float(value) * TIME_UNITS_MS[unit]


def parse_wrk(output: str, *, client_cpu: float, threads: int) -> LoadResult:
    """A LoadResult from wrk's ``--latency`` report."""
    requests, rps = _REQUESTS.search(output), _RPS.search(output)
    percentiles = {match[0]: _ms(match[1], match[2]) for match in _PERCENTILE.findall(output)}
    if requests is None or rps is None or set(percentiles) != {"50", "90", "99"}:
        raise LoadError(f"wrk printed no complete --latency report: {last_line(output)}")
    socket_errors = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return LoadResult(
        client="wrk",
        requests=int(requests.group(1)),
        errors=errors,
        duration=_ms(requests.group(2), requests.group(3)) / 1e3,
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
        client_cpu=client_cpu,
        client_threads=threads,
    )


class WrkClient:
    """HTTP/1.1 load with wrk: ``-t threads -c connections -d duration --latency``."""

    name: ClassVar[str] = "wrk"
    http2: ClassVar[bool] = False
    caps_requests: ClassVar[bool] = False  # wrk runs for a duration; stopping threads early skews its req/s
    sends_workloads: ClassVar[bool] = False  # one URL, a GET whose 2xx/3xx answers count as correct
    open_loop: ClassVar[bool] = False

    def available(self) -> bool:
        """True when ``wrk`` is on PATH."""
        return shutil.which("wrk") is not None

    def command(self, spec: LoadSpec) -> list[str]:
        """The wrk command line for ``spec``."""
        load = [f"-t{spec.client_threads}", f"-c{spec.connections}", f"-d{spec.duration:g}s"]
        return ["wrk", *load, "--latency", spec.url]

    def run(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> LoadResult:
        """Run wrk and parse its report (wrk reports no live count: ``on_progress`` is never called)."""
        if spec.requests is not None:
            raise LoadError("wrk cannot stop after a number of requests; use bench.client=builtin or h2load")
        if spec.duration != int(spec.duration):
            raise LoadError(f"wrk runs whole seconds, not {spec.duration:g}; use bench.client=builtin or h2load")
        run = run_tool(self.command(spec), timeout=spec.duration)
        if run.returncode != 0:
            raise LoadError(f"wrk failed (exit {run.returncode}): {last_line(run.stderr + run.stdout)}")
        return parse_wrk(run.stdout, client_cpu=run.cpu_cores, threads=spec.client_threads)
