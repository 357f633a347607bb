"""The tuner against the grid it replaces: how often its pick is the grid's best, and what it saves.

    .venv/bin/python benchmarks/tuner_vs_grid.py [--rounds 3] [--seeds 1,2,3] [--duration 4] [--out DIR]

1. **The grid**, the truth: every configuration of the space (server x loop x workers 1-2, and for granian its
   runtime mode st/mt x runtime threads 1-2: 24 configurations), ``--rounds`` rounds, each round in a seeded random
   order, every job a ``python -m pyfly_hydra mode=bench`` run; ranked by the sweep summary's own code, so its
   medians and ties are what a grid sweep would report.
2. **The tuner** (``hydra/sweeper=tune``) on the same space, once per seed, with at most a third of the grid's jobs:
   ``n_trials + contenders x confirm_rounds`` <= grid jobs / 3.
3. **Per seed**: the tuner's pick (its summary's first row, what its best.yaml holds), the grid's median for that
   pick over the grid's best median, whether the grid calls them tied, and the jobs spent. Prints Markdown.

Every job runs the workload (``--workload``, default mixed: the builtin client) with the server pinned to the first
CPU and the client to the others. The job directories stay under ``--out`` (a new temporary directory by default).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pyfly_hydra.bench.report.summary import load_records, rank
from pyfly_hydra.bench.report.sweep import write_summary
from pyfly_hydra.bench.rounds import shuffled_within_rounds
from pyfly_hydra.config.environment import without_configuration
from pyfly_hydra.registry import SERVER_NAMES

# The space, written once: the grid enumerates it, the tuner is given it in Hydra's sweep grammar.
SHARED = {"server": SERVER_NAMES, "loop": ("uvloop", "asyncio"), "server.workers": ("1", "2")}
GRANIAN_ONLY = {"server.granian.runtime_mode": ("st", "mt"), "server.granian.runtime_threads": ("1", "2")}
Key = tuple[str, ...]


def configurations(servers: tuple[str, ...]) -> list[list[str]]:
    """Every configuration of the space on ``servers``, as overrides (granian's own keys on granian only)."""
    found = []
    for shared in itertools.product(servers, *list(SHARED.values())[1:]):
        overrides = [f"{key}={value}" for key, value in zip(SHARED, shared, strict=True)]
        if shared[0] != "granian":
            found.append(overrides)
            continue
        for values in itertools.product(*GRANIAN_ONLY.values()):
            found.append(overrides + [f"{key}={value}" for key, value in zip(GRANIAN_ONLY, values, strict=True)])
    return found


def key_of(record: dict[str, Any]) -> Key:
    """A job's configuration as the grid and the tuner both record it."""
    granian = record["server_config"].get("granian", {}) if record["server"] == "granian" else {}
    threads = str(granian.get("runtime_threads", "-"))
    return record["server"], record["loop"], str(record["workers"]), granian.get("runtime_mode", "-"), threads


def describe(key: Key) -> str:
    server, loop, workers, mode, threads = key
    own = f" {mode} x{threads}" if server == "granian" else ""
    return f"{server} {loop} w{workers}{own}"


def pyfly(*overrides: str, log: Path) -> None:
    """``python -m pyfly_hydra OVERRIDES`` to completion, its output in ``log``; a failed run stops the benchmark."""
    with log.open("a") as out:
        done = subprocess.run(
            [sys.executable, "-m", "pyfly_hydra", *overrides],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=without_configuration(os.environ),  # the runs' configuration is the command line's alone
        )
    if done.returncode != 0:
        raise SystemExit(f"tuner_vs_grid: a run failed (exit {done.returncode}); its output: {log}")


def run_grid(out: Path, space: list[list[str]], *, rounds: int, common: list[str]) -> list[dict[str, Any]]:
    """Every configuration ``rounds`` times, round-major, each round shuffled; the jobs' records."""
    grid_dir = out / "grid"
    grid_dir.mkdir(parents=True)
    jobs = [[*c, f"bench.round={r}"] for r in range(1, rounds + 1) for c in space]
    jobs = shuffled_within_rounds(jobs, seed=0)
    for number, job in enumerate(jobs):
        print(f"grid job {number + 1}/{len(jobs)}: {' '.join(job)}", file=sys.stderr, flush=True)
        pyfly("mode=bench", *job, *common, f"hydra.run.dir={grid_dir / str(number)}", log=out / "grid.log")
    records = load_records(grid_dir)
    write_summary(grid_dir, records)
    return records


def run_tuner(out: Path, servers: tuple[str, ...], *, seed: int, tuner: list[str], common: list[str]) -> Path:
    """The tuner on the space, seeded; its sweep directory."""
    sweep_dir = out / f"tune-{seed}"
    space = {**SHARED, "server": servers}
    own = ",".join(f"{key}:'{','.join(values)}'" for key, values in GRANIAN_ONLY.items())
    granian = [f"+hydra.sweeper.spaces.granian={{{own}}}"] if "granian" in servers else []
    pyfly(
        "-m", "mode=bench", "hydra/sweeper=tune", f"hydra.sweeper.seed={seed}", *tuner,
        f"hydra.sweeper.study_name=seed{seed}", f"hydra.sweep.dir={sweep_dir}",
        *(f"{key}={','.join(values)}" for key, values in space.items()), *granian, *common,
        log=out / f"tune-{seed}.log",
    )  # fmt: skip
    return sweep_dir


def tuner_pick(sweep_dir: Path) -> tuple[Key, int, int]:
    """The tuner's pick (its summary's first row), the rounds it had of it, and the jobs it spent."""
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    first = [row for row in rows if row["rank"] == "1"]
    record = json.loads((sweep_dir / first[0]["job"] / "bench.json").read_text())
    return key_of(record), len(first), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="the grid's rounds (its truth)")
    parser.add_argument("--seeds", default="1,2,3", help="the tuner's seeds, comma-separated")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of measured load per job")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring, per job")
    parser.add_argument("--workload", default="mixed", help="bench/workload for every job")
    parser.add_argument("--servers", default=",".join(SHARED["server"]), help="the space's servers, comma-separated")
    parser.add_argument("--contenders", type=int, default=3, help="the tuner's hydra.sweeper.contenders")
    parser.add_argument("--confirm-rounds", type=int, default=3, help="the tuner's hydra.sweeper.confirm_rounds")
    parser.add_argument("--out", type=Path, default=None, help="where the jobs go (default: a new temporary dir)")
    parser.add_argument("--grid", type=Path, default=None, help="an earlier run's grid dir: its truth, not run again")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="pyfly-tuner-vs-grid-"))
    out.mkdir(parents=True, exist_ok=True)
    cpus = sorted(os.sched_getaffinity(0))
    pins = (
        [f"bench.server_cpus={cpus[0]}", f"bench.client_cpus={','.join(map(str, cpus[1:]))}"] if len(cpus) > 1 else []
    )
    common = [f"bench/workload={args.workload}", f"bench.duration={args.duration:g}", f"bench.warmup={args.warmup:g}"]
    common += pins
    servers = tuple(args.servers.split(","))
    space = configurations(servers)
    grid_jobs = len(space) * args.rounds
    budget = grid_jobs // 3
    n_trials = budget - args.contenders * args.confirm_rounds
    tuner = [
        f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.contenders={args.contenders}",
        f"hydra.sweeper.confirm_rounds={args.confirm_rounds}",
    ]  # fmt: skip
    if n_trials < 1:
        raise SystemExit(f"tuner_vs_grid: a third of {grid_jobs} grid jobs leaves the tuner no trial: raise --rounds")

    started = time.monotonic()
    records = load_records(args.grid) if args.grid else run_grid(out, space, rounds=args.rounds, common=common)
    ranked = rank(records, "rps")
    truth = {key_of(c.first): c for c in ranked}
    best = max((c for c in ranked if c.values), key=lambda c: c.median)
    grid_minutes = (time.monotonic() - started) / 60

    grid_from = f"from {args.grid}" if args.grid else f"{grid_minutes:.1f} min"
    print(f"Grid: {len(truth)} configurations x {args.rounds} rounds = {grid_jobs} jobs ({grid_from}), "
          f"workload {args.workload}, {args.duration:g} s per job; results in {out}\n")  # fmt: skip
    print("| grid rank | configuration | rps median | vs best | verdict |")
    print("|---:|---|---:|---:|---|")
    for c in ranked:
        ratio = c.median / best.median if c.values else float("nan")
        print(f"| {c.rank} | {describe(key_of(c.first))} | {c.median:,.0f} | {ratio:.3f} | {c.verdict} |")
    confirming = f"{args.contenders} x {args.confirm_rounds}"
    print(f"\nTuner: n_trials={n_trials} + confirming {confirming} rounds: at most {budget} jobs\n")
    print("| seed | tuner's pick | its rounds | grid median / grid best | grid verdict | jobs | good |")
    print("|---:|---|---:|---:|---|---:|---|")
    good = 0
    spent = []
    for seed in (int(s) for s in args.seeds.split(",")):
        pick, its_rounds, jobs = tuner_pick(run_tuner(out, servers, seed=seed, tuner=tuner, common=common))
        spent.append(jobs)
        found = truth[pick]
        ratio = found.median / best.median
        ok = ratio >= 0.95 or found.verdict in ("best", "winner", "tie")
        good += ok
        print(
            f"| {seed} | {describe(pick)} | {its_rounds} | {ratio:.3f} | {found.verdict} | {jobs} of {grid_jobs} |"
            f" {'yes' if ok else 'no'} |",
            flush=True,
        )
    seeds = len(spent)
    print(f"\nWithin 5% of the grid's best or tied with it: {good} of {seeds} seeds; jobs: median "
          f"{statistics.median(spent):g} of the grid's {grid_jobs} ({statistics.median(spent) / grid_jobs:.2f}); "
          f"{(time.monotonic() - started) / 60:.1f} min in all.")  # fmt: skip


if __name__ == "__main__":
    main()
