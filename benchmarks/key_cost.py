"""What one setting costs in throughput: the runner with it against the runner without, on every server.

    .venv/bin/python benchmarks/key_cost.py server.worker_timeout=30 server.worker_timeout=null [--rounds 5]

For each server (uvloop, one worker, the demo app's plaintext route), ``ON`` and ``OFF`` are served in
interleaved rounds, back to back (``benchmarks/compare.py``'s method: the server on CPU 0, ``wrk -t1 -c64``
on CPU 1); the ratio is the median over rounds of ON/OFF within a round. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os

from compare import Cpus, compare, runner  # benchmarks/compare.py, next to this script

from pyfly_hydra.registry import SERVER_NAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("on", help="the override measured, e.g. server.worker_timeout=30")
    parser.add_argument("off", help="the override it is measured against, e.g. server.worker_timeout=null")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per server")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument("--servers", default=",".join(SERVER_NAMES), help="comma-separated")
    args = parser.parse_args()
    cpus = Cpus.split(sorted(os.sched_getaffinity(0)))
    print(f"| server | {args.on} / {args.off} (rps, median) | middle half | rps {args.on} | rps {args.off} |")
    print("|---|---:|---:|---:|---:|")
    for server in args.servers.split(","):
        common = (f"server={server}", "loop=uvloop", "server.workers=1")
        pair = compare(
            server,
            runner(*common, args.on),
            runner(*common, args.off),
            rounds=args.rounds,
            start_rounds=0,
            duration=args.duration,
            cpus=cpus,
        )
        print(
            f"| {server} | {pair.ratio('rps'):.3f} | {pair.spread('rps')} | {pair.median(0, 'rps'):,.0f}"
            f" | {pair.median(1, 'rps'):,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
