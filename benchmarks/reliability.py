"""The long reliability runs behind the manual's figures (docs/reliability.md; about 3 minutes on 2 CPUs).

    .venv/bin/python benchmarks/reliability.py [--duration 20] [--servers granian,uvicorn,hypercorn]

For each server with 2 workers: 256 keep-alive connections for --duration seconds (wrk, or the builtin
client); the same load with one worker killed (SIGKILL) a quarter of the way in; and SIGTERM while
the load runs; then the slow-client drill (400 slowloris and 100 stalled-body connections for
--duration seconds beside one normal keep-alive client, keep-alive timeout 5 s). Prints Markdown tables.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from pyfly_hydra.bench.clients.base import LoadResult, LoadSpec
from pyfly_hydra.bench.clients.registry import select_client
from pyfly_hydra.bench.probe import http1_answers
from pyfly_hydra.bench.process import ServerProcess, free_port, worker_pids
from pyfly_hydra.bench.slow_clients import run_slow_client_drill

CONNECTIONS = 256


def start(server: str, log: Path, *overrides: str) -> tuple[ServerProcess, int]:
    port = free_port()
    command = [sys.executable, "-m", "pyfly_hydra", f"server={server}", "server.workers=2", f"server.port={port}"]
    command += ["server.access_log=false", f"hydra.run.dir={log.parent / log.stem}", *overrides]
    process = ServerProcess(command, log_path=log)
    process.wait_ready(lambda: http1_answers(f"http://127.0.0.1:{port}/health"), timeout=30)
    return process, port


def drive(port: int, duration: int) -> LoadResult:
    client = select_client("auto", http2=False)
    return client.run(LoadSpec(f"http://127.0.0.1:{port}/", duration, CONNECTIONS, threads=2))


def steady(server: str, workdir: Path, duration: int) -> str:
    process, port = start(server, workdir / f"{server}-steady.log")
    result = drive(port, duration)
    code = process.stop(timeout=40)
    figures = f"{result.requests:,} requests, {result.rps:,.0f} rps, {result.errors} failed"
    return f"{figures}, p99 {result.p99_ms:.1f} ms, exit {code}"


def crash(server: str, workdir: Path, duration: int) -> str:
    process, port = start(server, workdir / f"{server}-crash.log")
    victim = worker_pids(process.pid)[-1]
    threading.Timer(duration / 4, os.kill, (victim, signal.SIGKILL)).start()
    result = drive(port, duration)
    alive = process.process.poll() is None and http1_answers(f"http://127.0.0.1:{port}/health")
    code = process.stop(timeout=40)
    return f"{result.errors} of {result.requests:,} requests lost; {'still serving' if alive else 'DOWN'}, exit {code}"


def sigterm(server: str, workdir: Path, duration: int) -> str:
    process, port = start(server, workdir / f"{server}-sigterm.log", "server.graceful_timeout=10")
    stopped: dict[str, float] = {}

    def stop_midway() -> None:
        time.sleep(duration / 2)
        stopped["at"] = time.monotonic()
        process.stop(timeout=40)
        stopped["exited"] = time.monotonic()

    stopper = threading.Thread(target=stop_midway)
    stopper.start()
    result = drive(port, duration)
    stopper.join()
    took = stopped["exited"] - stopped["at"]
    return f"exit {process.process.returncode} {took:.1f} s after SIGTERM, {result.requests:,} answered before it"


def slow_clients(server: str, workdir: Path, duration: int) -> str:
    process, port = start(server, workdir / f"{server}-slow.log", "server.keep_alive_timeout=5")
    result = run_slow_client_drill(port, slowloris=400, slow_posts=100, duration=duration, baseline=3.0)
    code = process.stop(timeout=40)
    return (
        f"{result.slowloris.describe()} | {result.slow_post.describe()} | {result.baseline.describe()}"
        f" | {result.during.describe()} | {code}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--servers", default="granian,uvicorn,hypercorn")
    args = parser.parse_args()
    client = select_client("auto", http2=False).name
    load = f"{CONNECTIONS} connections, {args.duration} s ({client})"
    print(f"| server (2 workers) | {load} | worker killed under load | SIGTERM under load |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="pyfly-reliability-") as directory:
        workdir = Path(directory)
        for server in args.servers.split(","):
            row = [
                steady(server, workdir, args.duration),
                crash(server, workdir, args.duration),
                sigterm(server, workdir, args.duration),
            ]
            print(f"| {server} | " + " | ".join(row) + " |", flush=True)
        print(
            f"\n| server (2 workers) | 400 slowloris, {args.duration} s | 100 stalled bodies | normal, calm 3 s |",
            end="",
        )
        print(" normal, during the drill | exit |\n|---|---|---|---|---|---|")
        for server in args.servers.split(","):
            print(f"| {server} | {slow_clients(server, workdir, args.duration)} |", flush=True)


if __name__ == "__main__":
    main()
