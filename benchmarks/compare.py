"""Serving through pyfly-hydra against launching each server by hand: throughput, p99 and start-up.

    .venv/bin/python benchmarks/compare.py [--duration 10] [--rounds 3] [--start-rounds 10]
    (or: make bench-compare ARGS="...")
    .venv/bin/python benchmarks/compare.py --pool runs/*.txt    (the per-round lines of earlier runs, pooled)

For every server x loop, the demo app is served once through `python -m pyfly_hydra` and once through
the server's own command line with equivalent flags (one worker, no access log), in --rounds rounds
of (runner, raw) back to back; ratios are medians over rounds of the ratio within a round. With two or
more CPUs the server runs on CPU 0 and `wrk -t1 -c64` on CPU 1. Start-up (exec to the first 200) is
sampled --start-rounds more times per side, and every round also times Hydra's own floor:
`benchmarks/hydra_floor.py`, a `@hydra.main` program with nothing of ours in it.
It also compares the zero-configuration default (`python -m pyfly_hydra`) with `uvicorn
pyfly_hydra.demo:app` on uvicorn's own defaults, says which configuration was fastest and whether
`auto` picks it, and checks the performance goals. Prints Markdown. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from pyfly_hydra.bench.clients.base import LoadResult, LoadSpec
from pyfly_hydra.bench.clients.wrk import WrkClient
from pyfly_hydra.bench.probe import http1_answers
from pyfly_hydra.bench.process import ServerProcess, free_port, pinned
from pyfly_hydra.config.resolvers import pick
from pyfly_hydra.info import SERVER_ADAPTERS
from pyfly_hydra.registry import SERVER_NAMES

APP = "pyfly_hydra.demo:app"
BIN = Path(sys.executable).parent
HYDRA_FLOOR = Path(__file__).resolve().with_name("hydra_floor.py")
SERVERS = SERVER_NAMES  # pyfly_hydra.registry
LOOPS = ("uvloop", "asyncio")
# The performance goals: runner/raw throughput, runner/raw p99, pyfly-hydra's own share of start-up
# (runner - raw - Hydra's floor, per round), default over uvicorn's own defaults.
MIN_RPS_RATIO, MAX_P99_RATIO, MAX_OWN_START_MS, MIN_DEFAULT_RATIO = 0.97, 1.10, 50.0, 1.20
# A server's command line for a port and a scratch directory that is removed after the run.
Command = Callable[[int, Path], list[str]]


def runner(*overrides: str) -> Command:
    def command(port: int, scratch: Path) -> list[str]:
        run_dir = scratch / "run"
        return [sys.executable, "-m", "pyfly_hydra", *overrides, f"server.port={port}", f"hydra.run.dir={run_dir}"]

    return command


def raw(server: str, loop: str) -> Command:
    """The server's own command line (its adapter's ``raw_command``), serving what the runner serves."""
    adapter = SERVER_ADAPTERS[SERVER_NAMES.index(server)]
    return lambda port, _: adapter.raw_command(app=APP, port=port, loop=loop)


@dataclass(frozen=True)
class Cpus:
    """Where the server and the load generator run (None: unpinned, on a one-CPU machine)."""

    server: frozenset[int] | None
    client: frozenset[int] | None

    @staticmethod
    def split(cpus: list[int]) -> Cpus:
        if len(cpus) < 2:
            return Cpus(None, None)
        return Cpus(frozenset(cpus[:1]), frozenset(cpus[1:]))


@dataclass(frozen=True)
class Run:
    """One measured serve: time from exec to the first 200, and the load result (None: start-up only)."""

    start_ms: float
    load: LoadResult | None


def measure(command: Command, *, duration: int | None, cpus: Cpus) -> Run:
    """Start the server, time its first 200, put ``duration`` seconds of load on it (None: none), stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="pyfly-compare-") as directory:
        scratch = Path(directory)
        server = ServerProcess(command(port, scratch), log_path=scratch / "server.log", cpus=cpus.server)
        try:
            start_ms = server.wait_ready(lambda: http1_answers(url), timeout=30, poll_seconds=0.005) * 1000
            load = None
            if duration is not None:
                with pinned(cpus.client):
                    WrkClient().run(LoadSpec(url, 1, 64))  # warm-up
                    load = WrkClient().run(LoadSpec(url, duration, 64))
        finally:
            server.stop(timeout=30)
    return Run(start_ms, load)


def time_to_first_line(command: list[str], *, cpus: Cpus) -> float:
    """Milliseconds from exec to the first line ``command`` prints."""
    with pinned(cpus.server), tempfile.TemporaryDirectory(prefix="pyfly-compare-") as directory:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=directory)
        assert process.stdout is not None
        process.stdout.readline()
        elapsed = (time.perf_counter() - started) * 1000
        process.wait(timeout=30)
    return elapsed


@dataclass
class Pair:
    """Interleaved rounds of the two sides (runner, raw), each round run back to back.

    Ratios and deltas are medians over rounds of the figure within each round: both sides of a round
    ran under the same machine state, so slow drifts of a shared machine cancel out.
    """

    label: str
    rounds: list[tuple[Run, Run]] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)  # Hydra's floor, sampled in the same rounds

    def _loaded(self) -> list[tuple[LoadResult, LoadResult]]:
        return [(a.load, b.load) for a, b in self.rounds if a.load is not None and b.load is not None]

    def median(self, side: int, name: str) -> float:
        """Median of a load figure (``rps``, ``p99_ms``) of one side (0: runner, 1: raw)."""
        return statistics.median(getattr(loads[side], name) for loads in self._loaded())

    def ratios(self, name: str) -> list[float]:
        """Runner/raw for a load figure, one per round."""
        return [getattr(a, name) / getattr(b, name) for a, b in self._loaded()]

    def ratio(self, name: str) -> float:
        """Median over rounds of runner/raw for a load figure."""
        return statistics.median(self.ratios(name))

    def spread(self, name: str) -> str:
        """The middle half of the per-round ratios, e.g. ``0.95-1.04``: how far one round is from the next."""
        values = self.ratios(name)
        if len(values) < 2:
            return "-"
        first, _, third = statistics.quantiles(values, n=4)
        return f"{first:.2f}-{third:.2f}"

    def starts(self, side: int) -> list[float]:
        return [run[side].start_ms for run in self.rounds]

    def start_deltas(self) -> list[float]:
        """Runner minus raw start-up per round, in ms."""
        return [a.start_ms - b.start_ms for a, b in self.rounds]

    def own_share(self) -> float:
        """Median over rounds of what the runner adds beyond Hydra's floor of the same round, in ms."""
        return statistics.median(delta - floor for delta, floor in zip(self.start_deltas(), self.floors, strict=True))


def hydra_floor_ms(cpus: Cpus) -> float:
    """Hydra's own start-up: a bare @hydra.main program's exec-to-task less a bare interpreter's."""
    hydra = time_to_first_line([sys.executable, str(HYDRA_FLOOR), "hydra.run.dir=."], cpus=cpus)
    return hydra - time_to_first_line([sys.executable, "-c", "print()"], cpus=cpus)


def compare(label: str, a: Command, b: Command, *, rounds: int, start_rounds: int, duration: int, cpus: Cpus) -> Pair:
    pair = Pair(label)
    for _ in range(rounds):
        pair.rounds.append((measure(a, duration=duration, cpus=cpus), measure(b, duration=duration, cpus=cpus)))
        pair.floors.append(hydra_floor_ms(cpus))
        rps_a, rps_b = (run.load.rps if run.load else 0.0 for run in pair.rounds[-1])
        print(f"  {label}: {rps_a:,.0f} vs {rps_b:,.0f} rps", file=sys.stderr, flush=True)
    for _ in range(start_rounds):
        pair.rounds.append((measure(a, duration=None, cpus=cpus), measure(b, duration=None, cpus=cpus)))
        pair.floors.append(hydra_floor_ms(cpus))
    return pair


ROUND_LINE = re.compile(r"^\s*(\S+): ([\d,]+) vs ([\d,]+) rps$")


def pool(paths: Iterable[Path]) -> str:
    """Pool the per-round lines (``  label: RUNNER vs RAW rps``) of earlier runs into one Markdown table."""
    ratios: dict[str, list[float]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if match := ROUND_LINE.match(line):
                runner_rps, raw_rps = (float(group.replace(",", "")) for group in match.groups()[1:])
                ratios.setdefault(match.group(1), []).append(runner_rps / raw_rps)
    rows = ["| pair | rounds | median runner/raw | middle half | rounds where the runner was slower |"]
    rows.append("|---|---:|---:|---:|---:|")
    for label, values in ratios.items():
        first, _, third = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        slower = sum(value < 1 for value in values)
        rows.append(
            f"| {label} | {len(values)} | {statistics.median(values):.2f}x | {first:.2f}-{third:.2f} | {slower} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run (whole seconds, wrk)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved loaded runs per side; medians reported")
    parser.add_argument("--start-rounds", type=int, default=10, help="extra start-up-only runs per side")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated; empty: the default only")
    parser.add_argument(
        "--pool", nargs="+", type=Path, metavar="FILE", help="measure nothing: pool the per-round lines of earlier runs"
    )
    args = parser.parse_args()
    if args.pool:
        print(pool(args.pool))
        return
    if not WrkClient().available():
        raise SystemExit("benchmarks/compare.py needs wrk (apt-get install wrk)")
    cpu_list = sorted(os.sched_getaffinity(0))
    cpus = Cpus.split(cpu_list)
    pairs: list[tuple[str, str, Pair]] = []
    for server in filter(None, args.servers.split(",")):
        for loop in LOOPS:
            through = runner(f"server={server}", f"loop={loop}", "server.access_log=false")
            pair = compare(
                f"{server}/{loop}", through, raw(server, loop),
                rounds=args.rounds, start_rounds=args.start_rounds, duration=args.duration, cpus=cpus,
            )  # fmt: skip
            pairs.append((server, loop, pair))
    default = compare(
        "default", runner(), lambda port, _: [str(BIN / "uvicorn"), APP, "--port", str(port)],
        rounds=args.rounds, start_rounds=0, duration=args.duration, cpus=cpus,
    )  # fmt: skip
    report(pairs, default, args, cpu_list)


def report(pairs: list[tuple[str, str, Pair]], default: Pair, args: argparse.Namespace, cpus: list[int]) -> None:
    pinning = f"server on CPU {cpus[0]}, wrk -t1 -c64 on CPU {cpus[1]}" if len(cpus) > 1 else "no pinning (1 CPU)"
    versions = ", ".join(f"{name} {version(name)}" for name in (*SERVERS, "uvloop", "hydra-core", "omegaconf"))
    print(f"Measured {time.strftime('%Y-%m-%d')} on {platform.system()} {platform.machine()} with {len(cpus)} CPUs,")
    print(f"Python {platform.python_version()}, {versions}; {pinning}; {args.rounds} interleaved rounds")
    print(f"(runner, raw) of {args.duration} s of load after 1 s of warm-up. rps and p99: medians per side;")
    print("ratios: median over rounds of runner/raw within the round.\n")
    print("| server | loop | rps runner | rps raw | ratio (middle half) | p99 ms runner | p99 ms raw | p99 ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    failures: list[str] = []
    for server, loop, pair in pairs:
        rps_ratio, p99_ratio = pair.ratio("rps"), pair.ratio("p99_ms")
        rps_cells = (
            f"{pair.median(0, 'rps'):,.0f} | {pair.median(1, 'rps'):,.0f} | {rps_ratio:.2f}x ({pair.spread('rps')})"
        )
        p99_cells = f"{pair.median(0, 'p99_ms'):.2f} | {pair.median(1, 'p99_ms'):.2f} | {p99_ratio:.2f}x"
        print(f"| {server} | {loop} | {rps_cells} | {p99_cells} |")
        if rps_ratio < MIN_RPS_RATIO:
            failures.append(f"{server}/{loop} throughput {rps_ratio:.2f}x < {MIN_RPS_RATIO}x")
        if p99_ratio > MAX_P99_RATIO:
            failures.append(f"{server}/{loop} p99 {p99_ratio:.2f}x > {MAX_P99_RATIO}x")
    samples = len(pairs[0][2].rounds) if pairs else 0
    print(f"\nStart-up, exec to the first 200, {samples} rounds (runner, raw, Hydra's floor) back to back:\n")
    print("| server | loop | runner ms (median; min) | raw ms | runner - raw | Hydra's floor | pyfly-hydra's share |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for server, loop, pair in pairs:
        a, b = pair.starts(0), pair.starts(1)
        delta = statistics.median(pair.start_deltas())
        print(
            f"| {server} | {loop} | {statistics.median(a):.0f}; {min(a):.0f} | {statistics.median(b):.0f}; {min(b):.0f}"
            f" | {delta:+.0f} | {statistics.median(pair.floors):.0f} | {pair.own_share():+.0f} |"
        )
        if pair.own_share() > MAX_OWN_START_MS:
            failures.append(
                f"{server}/{loop} pyfly-hydra's share of start-up"
                f" {pair.own_share():+.0f} ms > {MAX_OWN_START_MS:.0f} ms"
            )
    if pairs:
        floors = [floor for _, _, pair in pairs for floor in pair.floors]
        print(
            "\nHydra's floor: `benchmarks/hydra_floor.py` (import hydra, one composition of its own config, its job"
            f" set-up) less a bare interpreter, {statistics.median(floors):.0f} ms (median of {len(floors)})."
            " pyfly-hydra's share: per round, runner - raw - floor. Columns are medians over rounds."
        )
    auto = (pick("server"), pick("loop"))
    if {server for server, _, _ in pairs} == set(SERVERS):
        rps = {(server, loop): pair.median(0, "rps") for server, loop, pair in pairs}
        fastest = max(rps, key=rps.__getitem__)
        print(f"\nFastest through the runner: {'/'.join(fastest)} ({rps[fastest]:,.0f} rps).")
        # Within the throughput tolerance of the fastest is a tie on a machine this noisy.
        share = rps.get(auto, 0.0) / rps[fastest]
        verdict = (
            "picks it" if auto == fastest else f"{share:.2f}x of it" + (", a tie" if share >= MIN_RPS_RATIO else "")
        )
        print(f"`auto` resolves to {'/'.join(auto)} here: {verdict}.")
        if share < MIN_RPS_RATIO:
            failures.append(f"`auto` picks {'/'.join(auto)}, {share:.2f}x of the fastest {'/'.join(fastest)}")
    else:
        print(f"\n`auto` resolves to {auto[0]}/{auto[1]} here; whether it is the fastest needs every server measured.")
    default_ratio = default.ratio("rps")
    print(
        f"\nDefault `python -m pyfly_hydra` ({auto[0]}/{auto[1]}): {default.median(0, 'rps'):,.0f} rps;"
        f" `uvicorn {APP}` on its defaults: {default.median(1, 'rps'):,.0f} rps: {default_ratio:.2f}x."
    )
    if default_ratio < MIN_DEFAULT_RATIO:
        failures.append(f"default {default_ratio:.2f}x < {MIN_DEFAULT_RATIO}x uvicorn's defaults")
    print("\nGoals: " + ("all met." if not failures else "NOT met: " + "; ".join(failures) + "."))


if __name__ == "__main__":
    main()
