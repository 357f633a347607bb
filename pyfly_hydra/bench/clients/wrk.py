"""wrk: the HTTP/1.1 load generator, parsed from its ``--latency`` report; workloads through a Lua script."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from pyfly_hydra.bench.clients.base import KindResult, LoadResult, LoadSpec, ProgressCallback
from pyfly_hydra.bench.clients.external import LoadError, last_line, run_tool
from pyfly_hydra.bench.clients.wrk_script import lua_script, parse_workload_line, refusal
from pyfly_hydra.bench.workload import Workload

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


def parse_wrk(output: str, *, client_cpu: float, threads: int, statuses_checked: bool = False) -> LoadResult:
    """A LoadResult from wrk's ``--latency`` report. ``statuses_checked``: a workload script counted the wrong
    statuses, so wrk's own "Non-2xx or 3xx" count (which a 404 the workload expects would be in) is left out."""
    requests, rps = _REQUESTS.search(output), _RPS.search(output)
    percentiles = {match[0]: _ms(match[1], match[2]) for match in _PERCENTILE.findall(output)}
    if requests is None or rps is None or set(percentiles) != {"50", "90", "99"}:
        raise LoadError(f"wrk printed no complete --latency report: {last_line(output)}")
    socket_errors = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx and not statuses_checked else 0
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
    open_loop: ClassVar[bool] = False
    reconnects: ClassVar[bool] = True

    def available(self) -> bool:
        """True when ``wrk`` is on PATH."""
        return shutil.which("wrk") is not None

    def workload_refusal(self, workload: Workload) -> str | None:
        """wrk sends any mix through a Lua script, but checks one expected status for all its requests."""
        return None if workload.single_plain_get else refusal(workload)

    def command(self, spec: LoadSpec, script: Path | None = None) -> list[str]:
        """The wrk command line for ``spec`` (``-s script`` for a workload)."""
        load = [f"-t{spec.client_threads}", f"-c{spec.connections}", f"-d{spec.duration:g}s"]
        return ["wrk", *load, *(["-s", str(script)] if script else []), "--latency", spec.url]

    def run(self, spec: LoadSpec, on_progress: ProgressCallback | None = None) -> LoadResult:
        """Run wrk and parse its report (wrk reports no live count: ``on_progress`` is never called)."""
        if spec.requests is not None:
            raise LoadError("wrk cannot stop after a number of requests; use bench.client=builtin or h2load")
        if spec.duration != int(spec.duration):
            raise LoadError(f"wrk runs whole seconds, not {spec.duration:g}; use bench.client=builtin or h2load")
        workload = spec.workload
        if workload is None or workload.single_plain_get:
            run = run_tool(self.command(spec), timeout=spec.duration)
            return parse_wrk(
                _checked(run.returncode, run.stdout, run.stderr), client_cpu=run.cpu_cores, threads=spec.client_threads
            )
        with tempfile.TemporaryDirectory(prefix="pyfly-wrk-") as directory:
            script = Path(directory) / "workload.lua"
            script.write_text(lua_script(workload))
            run = run_tool(self.command(spec, script), timeout=spec.duration)
        output = _checked(run.returncode, run.stdout, run.stderr)
        counts = parse_workload_line(output)
        if counts is None:
            raise LoadError(f"wrk's workload script reported no counts: {last_line(run.stderr + output)}")
        sent, wrong = counts
        result = parse_wrk(output, client_cpu=run.cpu_cores, threads=spec.client_threads, statuses_checked=True)
        errors = result.errors + wrong
        kinds = tuple(
            KindResult(kind.name, n, errors if len(sent) == 1 else None)  # wrk cannot attribute errors to kinds
            for kind, n in zip(workload.kinds, sent, strict=True)
        )
        return replace(result, errors=errors, kinds=kinds)


def _checked(returncode: int, stdout: str, stderr: str) -> str:
    if returncode != 0:
        raise LoadError(f"wrk failed (exit {returncode}): {last_line(stderr + stdout)}")
    return stdout
