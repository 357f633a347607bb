"""Workloads: the user's own mix of requests against the user's own app, each answer checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SERVERS, assert_one_line_error, child_env, needs_wrk, run_cli

CHECKOUT = """\
# A user's workload, in the user's config dir: conf/bench/workload/checkout.yaml
name: checkout
requests:
  - {name: search, method: GET, path: '/items?q=shoes', weight: 6, expect: 200}
  - name: order
    method: POST
    path: /orders
    headers: {content-type: application/json}
    body: '{"lines": [1, 2]}'
    weight: 3
    expect: 200
  - {name: missing, method: GET, path: /products/0, weight: 1, expect: 404}
"""


def _config_dir(tmp_path: Path, workload: str = CHECKOUT, name: str = "checkout") -> Path:
    directory = tmp_path / "conf" / "bench" / "workload"
    directory.mkdir(parents=True)
    (directory / f"{name}.yaml").write_text(workload)
    return tmp_path / "conf"


def _checkout_on_counted_app(tmp_path: Path, *overrides: str) -> tuple[dict[str, Any], dict[str, int]]:
    """mode=bench of the checkout workload on counted_app: its bench.json, and the app's own counters per kind
    (written at its shutdown)."""
    counts_file, run_dir = tmp_path / "counts.json", tmp_path / "run"
    result = run_cli(
        "mode=bench", "app=counted_app:app", "bench/workload=checkout", *overrides,
        f"hydra.searchpath=[file://{_config_dir(tmp_path)}]", "bench.warmup=0", f"hydra.run.dir={run_dir}",
        env=child_env(COUNTS_FILE=str(counts_file)),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((run_dir / "bench.json").read_text()), json.loads(counts_file.read_text())


@pytest.mark.parametrize("server", SERVERS)
def test_a_users_workload_on_a_fastapi_app_counts_each_kind(tmp_path: Path, server: str) -> None:
    record, answered = _checkout_on_counted_app(tmp_path, f"server={server}", "bench.duration=2", "bench.connections=8")
    assert record["workload"] == "checkout" and record["client"] == "builtin", record
    kinds = record["kinds"]
    assert set(kinds) == {"search", "order", "missing"}, kinds
    for name, figures in kinds.items():
        # The client stops counting at the deadline; at most one request per connection is still in flight.
        assert abs(figures["requests"] - answered[name]) <= max(8, 0.01 * answered[name]), (name, figures, answered)
        assert figures["errors"] == 0, kinds  # the 404s were expected
    assert record["errors"] == 0
    total = sum(figures["requests"] for figures in kinds.values())
    assert 0.5 < kinds["search"]["requests"] / total < 0.7, kinds  # weight 6 of 10


def test_two_client_processes_count_each_kind_as_the_app_does(tmp_path: Path) -> None:
    """bench.client_processes=2: the connections split over two processes, their counts merged, each kind's
    count within 1% of the app's own counters (at most one request per connection is in flight at the end)."""
    record, answered = _checkout_on_counted_app(
        tmp_path, "server=uvicorn", "bench.client_processes=2", "bench.duration=3", "bench.connections=16"
    )
    assert record["client"] == "builtin" and record["client_threads"] == 2, record  # auto picked the builtin
    assert len(record["client_process_cores"]) == 2, record
    for name, figures in record["kinds"].items():
        assert abs(figures["requests"] - answered[name]) <= max(16, 0.01 * answered[name]), (name, figures, answered)
        assert figures["errors"] == 0, record["kinds"]
    assert sum(figures["requests"] for figures in record["kinds"].values()) == record["requests"]


BROWSE = """\
name: browse
requests:
  - {name: search, method: GET, path: '/items?q=shoes', weight: 3}
  - {name: order, method: POST, path: /orders, headers: {content-type: application/json}, body: '{"lines": [1]}'}
"""


@needs_wrk
def test_wrk_sends_a_mix_through_its_lua_script(tmp_path: Path) -> None:
    counts_file, run_dir = tmp_path / "counts.json", tmp_path / "run"
    result = run_cli(
        "mode=bench", "server=uvicorn", "app=counted_app:app", "bench/workload=browse", "bench.client=wrk",
        f"hydra.searchpath=[file://{_config_dir(tmp_path, BROWSE, name='browse')}]", "bench.warmup=0",
        "bench.duration=2", "bench.connections=8", f"hydra.run.dir={run_dir}",
        env=child_env(COUNTS_FILE=str(counts_file)),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((run_dir / "bench.json").read_text())
    answered = json.loads(counts_file.read_text())
    assert record["client"] == "wrk" and record["errors"] == 0, record
    for name, figures in record["kinds"].items():
        # wrk counts what it sent: the requests still in flight at its end (one per connection) were not answered.
        assert 0 <= figures["requests"] - answered[name] <= 8, (name, figures, answered)
    assert 0.65 < answered["search"] / (answered["search"] + answered["order"]) < 0.85, answered  # weight 3 of 4


@needs_wrk
@pytest.mark.parametrize(("expect", "all_wrong"), [(404, False), (200, True)])
def test_wrk_checks_the_expected_status(tmp_path: Path, expect: int, all_wrong: bool) -> None:
    miss = f"name: miss\nrequests:\n  - {{name: missing, path: /missing, expect: {expect}}}\n"
    run_dir = tmp_path / "run"
    result = run_cli(
        "mode=bench", "server=granian", "bench/workload=miss", "bench.client=wrk", "bench.warmup=0",
        "bench.duration=1", "bench.connections=4", f"hydra.searchpath=[file://{_config_dir(tmp_path, miss, 'miss')}]",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((run_dir / "bench.json").read_text())
    assert record["client"] == "wrk" and record["requests"] > 100, record
    assert record["errors"] == (record["requests"] if all_wrong else 0), record


def test_an_unexpected_status_is_an_error_of_its_kind(tmp_path: Path) -> None:
    wrong = CHECKOUT.replace("path: /products/0, weight: 1, expect: 404", "path: /products/0, weight: 1, expect: 200")
    run_dir = tmp_path / "run"
    result = run_cli(
        "mode=bench", "server=uvicorn", "app=counted_app:app", "bench/workload=checkout", "bench.client=builtin",
        f"hydra.searchpath=[file://{_config_dir(tmp_path, wrong)}]", "bench.warmup=0", "bench.duration=1",
        "bench.connections=4", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = json.loads((run_dir / "bench.json").read_text())["kinds"]
    assert kinds["missing"]["errors"] == kinds["missing"]["requests"] > 0, kinds
    assert kinds["search"]["errors"] == kinds["order"]["errors"] == 0, kinds


def test_the_mixed_preset_sends_every_kind_and_gets_the_expected_answers(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        "mode=bench", "server=granian", "bench/workload=mixed", "bench.warmup=0", "bench.duration=2",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((run_dir / "bench.json").read_text())
    assert set(record["kinds"]) == {"plaintext", "json", "io", "cpu", "upload", "missing"}, record
    assert all(kind["requests"] > 0 and kind["errors"] == 0 for kind in record["kinds"].values()), record
    assert record["kinds"]["io"]["p50_ms"] >= 10, record  # the io kind awaits 10 ms


BAD_REQUEST = "  - {name: search, method: GET, path: /items, weight: 1, expect: 200}\n"
BAD_WORKLOADS = {
    "missing path": ("  - {name: search, method: GET}\n", ["requests[0].path", "is required"]),
    "bad method": (BAD_REQUEST.replace("GET", "FETCH"), ["requests[0].method=FETCH", "GET, HEAD, POST"]),
    "bad weight": (BAD_REQUEST.replace("weight: 1", "weight: 0"), ["requests[0].weight=0", "> 0"]),
    "bad status": (BAD_REQUEST.replace("expect: 200", "expect: 999"), ["requests[0].expect=999", "100..599"]),
    "no body file": (
        BAD_REQUEST.replace("weight: 1", "body_file: nowhere.json"),
        ["requests[0].body_file=nowhere.json", "no such file"],
    ),
}


@pytest.mark.parametrize("case", BAD_WORKLOADS)
def test_a_bad_workload_file_is_one_line(tmp_path: Path, case: str) -> None:
    request, fragments = BAD_WORKLOADS[case]
    config_dir = _config_dir(tmp_path, f"name: bad\nrequests:\n{request}", name="bad")
    result = run_cli("mode=bench", "bench/workload=bad", f"hydra.searchpath=[file://{config_dir}]")
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["bench/workload=nope"], ["bench/workload=nope", "mixed"]),
        (["bench/workload=mixed", "bench.client=wrk"], ["bench.client=wrk", "use bench.client=builtin"]),
        (["bench/workload=json", "bench.path=/x"], ["bench.path=/x", "not both"]),
        (["bench.path=/items?q=1"], ["bench.path=/items?q=1", "quote the value"]),
        (["bench.rate=0"], ["bench.rate=0", "> 0"]),
        (["bench.rate=-5"], ["bench.rate=-5", "> 0"]),
        (["bench.rate=many"], ["bench.rate", "many"]),
        (["bench.slo_p99_ms=50", "bench.client=wrk"], ["bench.client=wrk", "closed loop only", "builtin"]),
        (["bench.rate=100", "bench.client=wrk"], ["bench.client=wrk", "closed loop only"]),
        (["bench.slo_p99_ms=0"], ["bench.slo_p99_ms=0", "> 0"]),
        (["bench.slo_p99_ms=50", "bench.rate=100"], ["bench.rate=100", "sets its own"]),
        (["bench.metric=capacity"], ["bench.metric=capacity", "bench.slo_p99_ms"]),
        (["bench.slo_p99_ms=50", "bench.capacity.budget_seconds=2"], ["bench.capacity.budget_seconds=2", "3 steps"]),
        (["bench.rounds=0"], ["bench.rounds=0", "1..50"]),
    ],
)
def test_bad_workload_choices_are_one_line(overrides: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli("mode=bench", *overrides), *fragments)
