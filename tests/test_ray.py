"""Sweeps on a Ray cluster (hydra/launcher=ray_bench): one benchmark per node at a time, records back home.

The cluster is real and local: a head node and one benchmark node (the only one with ``bench_node``), started
with ``ray start --block`` in a network namespace of their own (loopback only: nothing leaves the machine and
no port is shared with anything else running here). The benchmark node also has a mount namespace of its own
with a tmpfs over the sweep dir's parent, so what its jobs write stays on "its" disk, as on another machine:
the driver's summary can only hold those jobs' records if they travel back in the jobs' return values.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, assert_one_line_error, child_env, needs

RAY = Path(sys.executable).with_name("ray")
HEAD = "127.0.0.1:6379"  # the cluster's own network namespace: every port is free
READY = "Ray runtime started."
START_TIMEOUT = 60.0
NO_ROUTE_NOTE = re.compile(r"network_util\.cc:\d+: Failed to determine local IP")  # the namespace has no route out

pytestmark = [
    pytest.mark.slow,  # not serial: what it checks (windows apart, records home) does not depend on a quiet machine
    pytest.mark.timeout(150),  # the first test also starts the cluster (~10 s)
    needs(
        find_spec("ray") is None or find_spec("hydra_plugins.hydra_ray_launcher") is None,
        "hydra/launcher=ray_bench needs ray and hydra-ray-launcher: pip install 'pyfly-hydra[ray]'",
    ),
    needs(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip", "mount")),
        "the test cluster needs root with unshare, nsenter, ip and mount (network and mount namespaces)",
    ),
]


@dataclass
class Cluster:
    """A head and one benchmark node in their own network namespace; the node sees a tmpfs at ``node_dir``."""

    head: subprocess.Popen[bytes]
    node: subprocess.Popen[bytes]
    node_dir: Path
    root: Path  # the logs of both nodes, and room for sweeps the driver never reaches

    def inside(self, *command: str) -> list[str]:
        """``command`` run in the cluster's network namespace."""
        return ["nsenter", f"--net=/proc/{self.head.pid}/ns/net", *command]

    def on_node(self, *command: str) -> list[str]:
        """``command`` run in the benchmark node's mount namespace: the files its jobs wrote."""
        return ["nsenter", f"--mount=/proc/{self.node.pid}/ns/mnt", *command]

    def run_sweep(self, *overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        """``python -m pyfly_hydra`` on the driver's side (the head's namespaces, RAY_ADDRESS set)."""
        env = child_env(RAY_ADDRESS=HEAD, RAY_USAGE_STATS_ENABLED="0")
        command = self.inside(sys.executable, "-m", "pyfly_hydra", *overrides)
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def start(command: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``command`` in a session of its own (its process group is what teardown stops), logging to ``log``."""
    with log.open("wb") as out:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)


def wait_started(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while READY not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"ray start did not come up:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop what ``process`` started, and only that: it, its descendants and its process group; SIGKILL at last."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for member in family:
            with suppress(psutil.NoSuchProcess):
                member.send_signal(sig)  # psutil checks it is still the same process, not a reused PID
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_running(member) for member in family):
            process.poll()
            time.sleep(0.1)
    process.wait(timeout=5)


def _running(member: psutil.Process) -> bool:
    try:
        return member.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("ray")
    node_dir = root / "node"  # the benchmark node mounts its own disk here
    node_dir.mkdir()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's unix socket paths must fit
    common = ["--block", "--disable-usage-stats", "--num-cpus=0"]  # the jobs ask for no CPU, only bench_node
    head = start(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", str(RAY), "start", "--head",
         f"--port={HEAD.rpartition(':')[2]}", f"--temp-dir={temp_dir}", "--include-dashboard=false", *common],
        root / "head.log", temp_dir,
    )  # fmt: skip
    node: subprocess.Popen[bytes] | None = None
    try:
        wait_started(head, root / "head.log")
        node = start(
            ["nsenter", f"--net=/proc/{head.pid}/ns/net", "unshare", "--mount", "--propagation", "private",
             "sh", "-c", 'mount -t tmpfs pyfly-node "$0" && exec "$@"', str(node_dir),
             str(RAY), "start", f"--address={HEAD}", '--resources={"bench_node": 1}', *common],
            root / "node.log", temp_dir,
        )  # fmt: skip
        wait_started(node, root / "node.log")
        yield Cluster(head, node, node_dir, root)
    finally:
        for process in (node, head):
            if process is not None:
                stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_runs_one_job_at_a_time_and_lands_records_from_a_separate_filesystem(cluster: Cluster) -> None:
    sweep_dir = cluster.node_dir / "sweep"
    # Relative, as Hydra's default is: a node's Ray workers run elsewhere (cwd), the launcher pins the driver's.
    result = cluster.run_sweep(
        "-m", "mode=bench", "server=granian,uvicorn", "loop=uvloop,asyncio", "hydra/launcher=ray_bench",
        "bench.rounds=3", "bench.duration=1", "bench.warmup=0", "bench.connections=4", "hydra.sweep.dir=sweep",
        cwd=cluster.node_dir,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    jobs = sorted((path for path in sweep_dir.iterdir() if path.is_dir()), key=lambda path: int(path.name))
    assert [job.name for job in jobs] == [str(number) for number in range(12)], output
    # The driver sees only the records that came back: the jobs' own files stayed on the node's disk.
    assert all(sorted(p.name for p in job.iterdir()) == ["bench.json"] for job in jobs), output
    assert "landed 12 of 12 job records" in output
    on_node = subprocess.run(cluster.on_node("ls", str(jobs[0])), capture_output=True, text=True, check=True)
    assert {"bench.json", "server.log", "serve"} <= set(on_node.stdout.split())

    records = [json.loads((job / "bench.json").read_text()) for job in jobs]
    assert [r["status"] for r in records] == ["ok"] * 12, [r["reason"] for r in records]
    for (_, finished), (started, _) in itertools.pairwise(windows(sweep_dir)):
        assert finished <= started, windows(sweep_dir)  # bench_node: 1 per node, so one benchmark at a time
    # Run in the sweep's order, as their start times show: round-major, each round in its own shuffled order.
    by_start = sorted(records, key=lambda r: r["started"])
    assert [r["job"] for r in by_start] == list(range(12)), [(r["job"], r["round"]) for r in by_start]
    assert [r["round"] for r in by_start] == [1] * 4 + [2] * 4 + [3] * 4
    orders = {tuple(r["label"] for r in by_start if r["round"] == number) for number in (1, 2, 3)}
    assert len(orders) > 1, orders  # shuffled: not every round in the grid's order

    rows = list(csv.DictReader(io.StringIO((sweep_dir / "summary.csv").read_text())))
    expected = {(server, loop) for server in ("granian", "uvicorn") for loop in ("uvloop", "asyncio")}
    assert {(row["server"], row["loop"]) for row in rows} == expected
    assert sorted(int(row["job"]) for row in rows) == list(range(12))
    summary = (sweep_dir / "summary.md").read_text()
    for record in records:
        assert f"`{record['label']}`" in summary, summary


def test_the_tuner_runs_its_trials_on_the_cluster(cluster: Cluster) -> None:
    sweep_dir = cluster.node_dir / "tune"
    result = cluster.run_sweep(
        "-m", "mode=bench", "hydra/sweeper=tune", "hydra/launcher=ray_bench", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.confirm_rounds=0", "server=granian,uvicorn", "bench.duration=1", "bench.warmup=0",
        "bench.connections=4", f"hydra.sweep.dir={sweep_dir}",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    trials = list(csv.DictReader(io.StringIO((sweep_dir / "trials.csv").read_text())))
    assert [row["state"] for row in trials] == ["complete", "complete"], trials
    assert all(float(row["value"]) > 0 for row in trials)
    assert output.count("landed 1 of 1 job records") == 2, output  # each trial's record came back with it


def test_the_resource_is_what_keeps_jobs_apart(cluster: Cluster) -> None:
    """The check above can fail: with half a bench_node each, the same node runs two benchmarks at once."""
    sweep_dir = cluster.node_dir / "halves"
    result = cluster.run_sweep(
        "-m", "mode=bench", "server=granian,uvicorn", "hydra/launcher=ray_bench",
        "hydra.launcher.ray.remote.resources.bench_node=0.5", "bench.duration=3", "bench.warmup=0",
        "bench.connections=4", f"hydra.sweep.dir={sweep_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = windows(sweep_dir)
    assert second[0] < first[1], (first, second)


def test_a_missing_resource_is_one_line(cluster: Cluster) -> None:
    result = cluster.run_sweep(
        "-m", "mode=bench", "hydra/launcher=ray_bench", "+hydra.launcher.ray.remote.resources.gpu_node=1",
        f"hydra.sweep.dir={cluster.root / 'never'}",
    )  # fmt: skip
    error = "no node of the Ray cluster at 127.0.0.1:6379 offers gpu_node; start each benchmark node with ray start"
    assert_one_line_error(without_no_route_note(result), f"hydra.launcher.ray.remote.resources.gpu_node=1: {error}")


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("127.0.0.1:6390", "no Ray cluster answers at 127.0.0.1:6390 (Connection refused); start one with ray start"),
        ("nonsense", "must be auto or HOST:PORT of a Ray cluster's head"),
    ],
)
def test_an_address_where_no_cluster_answers_is_one_line(cluster: Cluster, address: str, error: str) -> None:
    result = cluster.run_sweep(
        "-m", "mode=bench", "hydra/launcher=ray_bench", f"hydra.launcher.ray.init.address={address}",
        f"hydra.sweep.dir={cluster.root / 'never'}",
    )  # fmt: skip
    assert_one_line_error(without_no_route_note(result), f"hydra.launcher.ray.init.address={address}: {error}")


def windows(sweep_dir: Path) -> list[tuple[float, float]]:
    """Each job's wall-clock window (started, finished), in order."""
    records = [json.loads(path.read_text()) for path in sweep_dir.glob("*/bench.json")]
    return sorted((record["started"], record["finished"]) for record in records)


def without_no_route_note(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The run's output without Ray's note that the cluster's namespace has no route out (a networked host has)."""
    stderr = "".join(line for line in result.stderr.splitlines(keepends=True) if not NO_ROUTE_NOTE.search(line))
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout, stderr)
