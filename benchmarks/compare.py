"""Serving through pyfly-hydra against launching each server by hand: throughput, p99 and start-up.

    .venv/bin/python benchmarks/compare.py [--duration 10] [--rounds 3]      (or: make bench-compare)

For every server x loop, the demo app is served once through `python -m pyfly_hydra` and once through
the server's own command line with equivalent flags (one worker, no access log), interleaved A B A B.
With two or more CPUs the server runs on CPU 0 and `wrk -t1 -c64` on CPU 1. Medians of --rounds runs.
It also compares the zero-configuration default (`python -m pyfly_hydra`) with `uvicorn
pyfly_hydra.demo:app` on uvicorn's own defaults, and says which configuration was fastest and whether
`auto` picks it. Prints Markdown. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pyfly_hydra.bench.clients.base import LoadResult, LoadSpec
from pyfly_hydra.bench.clients.wrk import WrkClient
from pyfly_hydra.bench.probe import http1_answers
from pyfly_hydra.bench.process import ServerProcess, free_port, pinned
from pyfly_hydra.resolvers import pick

APP = "pyfly_hydra.demo:app"
BIN = Path(sys.executable).parent
SERVERS = ("granian", "uvicorn", "hypercorn")
LOOPS = ("uvloop", "asyncio")
Command = Callable[[int], list[str]]


def runner(*overrides: str) -> Command:
    def command(port: int) -> list[str]:
        run_dir = tempfile.mkdtemp(prefix="pyfly-compare-")
        return [sys.executable, "-m", "pyfly_hydra", *overrides, f"server.port={port}", f"hydra.run.dir={run_dir}"]

    return command


RAW: dict[str, Callable[[str], Command]] = {
    "granian": lambda loop: lambda port: [
        str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--loop", loop, "--no-access-log", APP,
    ],
    "uvicorn": lambda loop: lambda port: [
        str(BIN / "uvicorn"), APP, "--host", "127.0.0.1", "--port", str(port), "--loop", loop, "--no-access-log",
    ],
    "hypercorn": lambda loop: lambda port: [
        str(BIN / "hypercorn"), f"asgi:{APP}", "--bind", f"127.0.0.1:{port}", "--worker-class", loop,
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One measured serve: time from exec to the first 200, and the load result."""

    start_ms: float
    load: LoadResult


def measure(command: Command, *, duration: int, server_cpus: set[int] | None, client_cpus: set[int] | None) -> Run:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="pyfly-compare-") as directory:
        server = ServerProcess(
            command(port), log_path=Path(directory) / "server.log", cpus=frozenset(server_cpus or ()) or None
        )
        try:
            start_ms = server.wait_ready(lambda: http1_answers(url), timeout=30, poll_seconds=0.005) * 1000
            with pinned(frozenset(client_cpus or ()) or None):
                WrkClient().run(LoadSpec(url, 1, 64))  # warm-up
                load = WrkClient().run(LoadSpec(url, duration, 64))
        finally:
            server.stop(timeout=30)
    return Run(start_ms, load)


@dataclass(frozen=True)
class Pair:
    """Medians of the interleaved runs of the two sides."""

    label: str
    a: list[Run]
    b: list[Run]

    @staticmethod
    def median(runs: list[Run], field: str) -> float:
        values = [run.start_ms if field == "start_ms" else getattr(run.load, field) for run in runs]
        return statistics.median(values)


def compare(label: str, a: Command, b: Command, *, rounds: int, duration: int, cpus: list[int]) -> Pair:
    server_cpus, client_cpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (None, None)
    runs_a, runs_b = [], []
    for _ in range(rounds):
        runs_a.append(measure(a, duration=duration, server_cpus=server_cpus, client_cpus=client_cpus))
        runs_b.append(measure(b, duration=duration, server_cpus=server_cpus, client_cpus=client_cpus))
        print(f"  {label}: {runs_a[-1].load.rps:,.0f} vs {runs_b[-1].load.rps:,.0f} rps", file=sys.stderr, flush=True)
    return Pair(label, runs_a, runs_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run (whole seconds, wrk)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per side; medians are reported")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated; empty: the default only")
    args = parser.parse_args()
    if not WrkClient().available():
        raise SystemExit("benchmarks/compare.py needs wrk (apt-get install wrk)")
    cpus = sorted(os.sched_getaffinity(0))
    pairs: list[tuple[str, str, Pair]] = []
    for server in filter(None, args.servers.split(",")):
        for loop in LOOPS:
            through = runner(f"server={server}", f"loop={loop}", "server.access_log=false")
            pair = compare(
                f"{server}/{loop}", through, RAW[server](loop), rounds=args.rounds, duration=args.duration, cpus=cpus
            )
            pairs.append((server, loop, pair))
    default = compare(
        "default", runner(), lambda port: [str(BIN / "uvicorn"), APP, "--port", str(port)],
        rounds=args.rounds, duration=args.duration, cpus=cpus,
    )  # fmt: skip
    report(pairs, default, args, cpus)


def report(pairs: list[tuple[str, str, Pair]], default: Pair, args: argparse.Namespace, cpus: list[int]) -> None:
    pinning = f"server on CPU {cpus[0]}, wrk -t1 -c64 on CPU {cpus[1]}" if len(cpus) > 1 else "no pinning (1 CPU)"
    versions = ", ".join(f"{name} {version(name)}" for name in (*SERVERS, "uvloop"))
    print(f"Measured {time.strftime('%Y-%m-%d')} on {platform.system()} {platform.machine()} with {len(cpus)} CPUs,")
    print(f"Python {platform.python_version()}, {versions}; {pinning}; {args.duration} s of load after 1 s of")
    print(f"warm-up, medians of {args.rounds} interleaved runs (runner, raw, runner, raw, ...).\n")
    columns = "rps runner | rps raw | ratio | p99 ms runner | p99 ms raw | p99 ratio"
    print(f"| server | loop | {columns} | start ms runner | start ms raw | start delta ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for server, loop, pair in pairs:
        rps_a, rps_b = Pair.median(pair.a, "rps"), Pair.median(pair.b, "rps")
        p99_a, p99_b = Pair.median(pair.a, "p99_ms"), Pair.median(pair.b, "p99_ms")
        start_a, start_b = Pair.median(pair.a, "start_ms"), Pair.median(pair.b, "start_ms")
        print(
            f"| {server} | {loop} | {rps_a:,.0f} | {rps_b:,.0f} | {rps_a / rps_b:.2f}x | {p99_a:.2f} | {p99_b:.2f}"
            f" | {p99_a / p99_b:.2f}x | {start_a:.0f} | {start_b:.0f} | {start_a - start_b:+.0f} |"
        )
    auto = (pick("server"), pick("loop"))
    if pairs:
        fastest = max(pairs, key=lambda item: Pair.median(item[2].a, "rps"))
        print(f"\nFastest through the runner: {fastest[0]}/{fastest[1]} ({Pair.median(fastest[2].a, 'rps'):,.0f} rps).")
        verdict = "picks it" if auto == fastest[:2] else "does NOT pick it"
        print(f"`auto` resolves to {auto[0]}/{auto[1]} here: it {verdict}.")
    ours, theirs = Pair.median(default.a, "rps"), Pair.median(default.b, "rps")
    print(
        f"\nDefault `python -m pyfly_hydra` ({auto[0]}/{auto[1]}): {ours:,.0f} rps;"
        f" `uvicorn {APP}` on its defaults: {theirs:,.0f} rps: {ours / theirs:.2f}x."
    )


if __name__ == "__main__":
    main()
