"""How far the load clients reach: the builtin client in one process against wrk, and in two against one.

    .venv/bin/python benchmarks/client_scaling.py [--rounds 3] [--duration 8] [--server granian]

One server (the demo app's plain GET, one worker, uvloop, through ``python -m pyfly_hydra``) is measured by
wrk (``-t1 -c64``), the builtin client in one process and in two (64 connections in all), in interleaved rounds,
the server on the first CPU and the clients on the others (both builtin processes on the same CPU when there is
only one other: then two processes cannot add a CPU, only show what splitting costs). Prints Markdown: rps,
p99, each client's CPU and whether it called itself saturated; the ratios are medians over rounds of the
ratio within a round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from compare import runner  # benchmarks/compare.py, next to this script

from pyfly_hydra.bench.clients.base import LoadClient, LoadResult, LoadSpec
from pyfly_hydra.bench.clients.builtin import BuiltinClient
from pyfly_hydra.bench.clients.wrk import WrkClient
from pyfly_hydra.bench.probe import http1_answers
from pyfly_hydra.bench.process import ServerProcess, free_port, pinned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per client per round")
    parser.add_argument("--server", default="granian", help="the server measured (one worker, uvloop)")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = frozenset(cpus[:1]) if len(cpus) > 1 else None
    client_cpus = frozenset(cpus[1:]) if len(cpus) > 1 else None
    clients: dict[str, LoadClient] = {
        "wrk -t1": WrkClient(),
        "builtin, 1 process": BuiltinClient(),
        "builtin, 2 processes": BuiltinClient(processes=2, cpus=client_cpus),
    }
    if not WrkClient().available():
        raise SystemExit("benchmarks/client_scaling.py needs wrk (apt-get install wrk)")
    results: dict[str, list[LoadResult]] = {name: [] for name in clients}
    port = free_port()
    command = runner(f"server={args.server}", "loop=uvloop", "server.workers=1", "server.access_log=false")
    with tempfile.TemporaryDirectory(prefix="pyfly-client-scaling-") as directory:
        scratch = Path(directory)
        server = ServerProcess(command(port, scratch), log_path=scratch / "server.log", cpus=server_cpus)
        url = f"http://127.0.0.1:{port}/"
        try:
            server.wait_ready(lambda: http1_answers(url), timeout=30)
            with pinned(client_cpus):
                WrkClient().run(LoadSpec(url, 2, 64))  # warm-up
                for _ in range(args.rounds):
                    for name, client in clients.items():
                        results[name].append(client.run(LoadSpec(url, args.duration, 64)))
        finally:
            server.stop(timeout=30)
    print(f"{args.server}, one worker, on CPU {cpus[0]}; clients on CPU(s) {sorted(client_cpus or cpus)};")
    print(f"{args.rounds} interleaved rounds of {args.duration} s, 64 connections; medians over rounds.\n")
    print("| client | rps | p99 ms | client CPU (cores) | saturated | rps / wrk's |")
    print("|---|---:|---:|---:|---|---:|")
    for name, runs in results.items():
        ratio = statistics.median(run.rps / wrk.rps for run, wrk in zip(runs, results["wrk -t1"], strict=True))
        print(
            f"| {name} | {statistics.median(run.rps for run in runs):,.0f}"
            f" | {statistics.median(run.p99_ms for run in runs):.2f}"
            f" | {statistics.median(run.client_cpu for run in runs):.2f}"
            f" | {sum(run.saturated for run in runs)} of {len(runs)} | {ratio:.2f} |"
        )
    two, one = results["builtin, 2 processes"], results["builtin, 1 process"]
    gain = statistics.median(a.rps / b.rps for a, b in zip(two, one, strict=True))
    print(f"\nTwo processes against one: {gain:.2f}x.")


if __name__ == "__main__":
    main()
