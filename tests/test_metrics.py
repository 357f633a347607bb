"""The admin listener (``server.metrics.port``): ``/metrics`` parsed with prometheus_client's own parser, ``/readyz``
through a drain, worker exits by reason; and the counting itself, in-process, with a worker that is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyfly_hydra.bench.process import free_port
from pyfly_hydra.registry import SERVER_NAMES
from pyfly_hydra.runner.metrics import ServerMetrics
from pyfly_hydra.worker.metrics import DURATION_BUCKETS, WorkerMetrics
from tests.conftest import assert_one_line_error, run_cli


def app_and_admin_ports() -> tuple[int, int]:
    """Two free ports that differ: two calls of ``free_port`` may give the same one (the second run then refused
    with "must not be the app's port")."""
    app = free_port()
    admin = free_port()
    while admin == app:
        admin = free_port()
    return app, admin


def scrape(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """``/metrics`` as {family: [(sample, labels, value)]}, through prometheus_client's parser."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        family.name: [(sample.name, sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def total(families: dict[str, list[tuple[str, dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample, sample_labels, value in families[name]
        if sample.endswith("_total") and labels.items() <= sample_labels.items()
    )


@pytest.mark.parametrize("server", SERVER_NAMES)
def test_metrics_sum_every_worker_and_readyz_follows_the_drain(start_server, server: str) -> None:
    port, admin = app_and_admin_ports()
    running = start_server(
        f"server={server}", "server.workers=2", f"server.metrics.port={admin}", ready_path=None, port=port
    )
    deadline, ready = time.monotonic() + 30, None
    while ready is None or ready.status_code != 200:  # 503 "starting" until both workers serve
        assert time.monotonic() < deadline, (ready, running.log())
        try:
            ready = httpx.get(f"http://127.0.0.1:{admin}/readyz", timeout=5)
        except httpx.ConnectError:
            time.sleep(0.1)
            continue
        assert ready.text in ("starting\n", "serving\n")
    assert httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{admin}/other", timeout=5).status_code == 404
    pids = set()
    with httpx.Client(base_url=running.url, timeout=5) as client:
        for _ in range(300):
            assert client.get("/").status_code == 200
        for _ in range(20):  # new connections: both workers answer
            with httpx.Client(base_url=running.url, timeout=5) as fresh:
                pids.add(fresh.get("/loop").json()["pid"])

    families = scrape(admin)
    assert total(families, "pyfly_hydra_requests", method="GET", status="2xx") >= 320
    histogram = {labels["le"]: value for sample, labels, value in families["pyfly_hydra_request_duration_seconds"]
                 if sample.endswith("_bucket")}  # fmt: skip
    assert list(histogram) == [*(str(bound) for bound in DURATION_BUCKETS), "+Inf"]
    assert histogram["+Inf"] >= 320
    assert total(families, "pyfly_hydra_response_body_bytes") > 0
    assert total(families, "pyfly_hydra_worker_starts") == 2
    [info] = [labels for samples in families.values() for name, labels, _ in samples if name == "pyfly_hydra_info"]
    assert info["server"] == server
    workers = {labels["worker"] for _, labels, _ in families["pyfly_hydra_worker_resident_memory_bytes"]}
    assert len(workers) == 2 and {str(pid) for pid in pids} <= workers, (workers, pids)

    # A request in flight holds the drain open: /readyz says so while the runner still listens.
    slow = threading.Thread(target=lambda: httpx.get(running.url + "/sleep?seconds=3", timeout=10))
    slow.start()
    time.sleep(0.5)
    running.process.send_signal(signal.SIGTERM)
    deadline, draining = time.monotonic() + 3, None
    while time.monotonic() < deadline and draining is None:
        answer = httpx.get(f"http://127.0.0.1:{admin}/readyz", timeout=2)
        draining = answer if answer.status_code == 503 else None
    slow.join()
    assert draining is not None and draining.text == "draining\n", running.log()
    assert running.wait_exit(timeout=30) == 0, running.log()


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_a_recycled_workers_counts_are_kept(start_server, server: str) -> None:
    """Workers replaced after their requests: the counter keeps what they counted, the exits say why."""
    port, admin = app_and_admin_ports()
    running = start_server(
        f"server={server}", "server.workers=2", "server.max_requests_per_worker=40", f"server.metrics.port={admin}",
        port=port,
    )  # fmt: skip
    for _ in range(200):  # a connection each: both workers reach their limit
        assert httpx.get(running.url + "/", timeout=5).status_code == 200
    deadline = time.monotonic() + 20
    while True:
        families = scrape(admin)
        if total(families, "pyfly_hydra_worker_exits", reason="recycled_requests") >= 2:
            break
        assert time.monotonic() < deadline, families["pyfly_hydra_worker_exits"]
        time.sleep(0.5)
    assert total(families, "pyfly_hydra_worker_starts") >= 4
    time.sleep(1)  # the replaced workers exit and are folded into the retired counts
    assert total(scrape(admin), "pyfly_hydra_requests", method="GET", status="2xx") >= 200


def test_the_admin_port_must_not_be_the_apps() -> None:
    result = run_cli("server.port=18000", "server.metrics.port=18000")
    assert_one_line_error(result, "server.metrics.port=18000", "must not be the app's port")


def test_an_admin_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(f"server.port={free_port()}", f"server.metrics.port={port}")
    assert_one_line_error(result, f"server.metrics.port={port}", "cannot listen")


def test_a_gone_workers_counts_are_folded_and_in_flight_dropped(tmp_path: Path) -> None:
    """In-process: two workers' files (one from a process that has exited), summed; the gone one's file folded."""
    child = subprocess.run(
        [sys.executable, "-c", _COUNT_AND_EXIT, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        check=True,
    )  # fmt: skip
    assert child.returncode == 0
    here = WorkerMetrics(str(tmp_path))
    here.started()
    here.finished(method="POST", status=201, sent=5, seconds=0.003)
    here.started()  # one in flight here
    collector = ServerMetrics(directory=tmp_path, info={"server": "test"})

    for _ in range(2):  # the second look: the gone worker's file is folded, its counts kept
        families = {family.name: family for family in collector.collect()}
        requests = {tuple(s.labels.values()): s.value for s in families["pyfly_hydra_requests"].samples}
        assert requests[("GET", "2xx")] == 3
        assert requests[("OTHER", "4xx")] == 1  # a client's own method is not a label of its own
        assert requests[("POST", "2xx")] == 1
        assert families["pyfly_hydra_requests_in_flight"].samples[0].value == 1  # the gone worker's is dropped
        histogram = {s.labels.get("le"): s.value for s in families["pyfly_hydra_request_duration_seconds"].samples}
        assert histogram["0.001"] == 3 and histogram["0.005"] == 4 and histogram["+Inf"] == 5
        assert len(list(tmp_path.iterdir())) == 1


_COUNT_AND_EXIT = """
import sys
from pyfly_hydra.worker.metrics import WorkerMetrics
metrics = WorkerMetrics(sys.argv[1])
for _ in range(3):
    metrics.started()
    metrics.finished(method="GET", status=200, sent=10, seconds=0.0005)
metrics.started()
metrics.finished(method="BREW", status=418, sent=0, seconds=0.02)
metrics.started()  # in flight when the process ends
"""
