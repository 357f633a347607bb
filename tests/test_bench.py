"""mode=bench end to end, and the sweep summary callback on real sweeps, against real servers."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from pyfly_hydra.bench.progress import Progress
from pyfly_hydra.bench.rounds import shuffled_within_rounds
from tests.conftest import child_env, hidden_modules_env, needs_h2load, run_cli

SHORT = ["bench.duration=1", "bench.warmup=1", "bench.connections=8"]
RECORD_KEYS = {
    "server", "loop", "workers", "http", "client", "duration", "requests", "errors", "rps", "p50_ms", "p90_ms",
    "p99_ms", "server_cpu_percent", "server_peak_rss_mib", "client_saturated", "status",
}  # fmt: skip


def bench(tmp_path: Path, *overrides: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    run_dir = tmp_path / "run"
    result = run_cli("mode=bench", *SHORT, *overrides, f"hydra.run.dir={run_dir}", env=env)
    record_path = run_dir / "bench.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    return result.returncode, record, result.stdout + result.stderr


@pytest.mark.parametrize("client", ["auto", "builtin"])
def test_bench_end_to_end(tmp_path: Path, client: str) -> None:
    code, record, output = bench(tmp_path, "server=uvicorn", "loop=uvloop", f"bench.client={client}")
    assert code == 0, output
    assert set(record) >= RECORD_KEYS
    assert record["status"] == "ok" and record["server"] == "uvicorn" and record["loop"] == "uvloop"
    assert record["rps"] > 0 and record["requests"] > 0 and record["errors"] == 0
    assert record["p50_ms"] <= record["p90_ms"] <= record["p99_ms"]
    assert record["server_cpu_percent"] > 0 and record["server_peak_rss_mib"] > 5
    assert record["server_exit_code"] == 0
    if client == "builtin":
        assert record["client"] == "builtin"
    assert "bench uvicorn/uvloop x1:" in output
    served = (tmp_path / "run" / "server.log").read_text()
    assert "serving pyfly_hydra.demo:app (asgi) on uvicorn" in served  # started exactly as mode=serve does
    assert "127.0.0.1" in served


def test_bench_keeps_the_access_log_off_under_env_dev(tmp_path: Path) -> None:
    """env=dev turns the access log on; mode=bench turns it off again (conf/mode/bench.yaml): a line per
    request would measure the logger. Shown by the served child: its config and its log."""
    quick = ["bench.duration=1", "bench.warmup=0", "bench.client=builtin", "bench.connections=4"]
    result = run_cli("mode=bench", "env=dev", "server=uvicorn", *quick, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((tmp_path / "run" / "bench.json").read_text())
    assert record["status"] == "ok" and record["requests"] > 0, record
    served = yaml.safe_load((tmp_path / "run" / "serve" / "serve.yaml").read_text())
    assert served["server"]["access_log"] is False, served["server"]
    assert served["server"]["log_level"] == "debug"  # env=dev did apply: only the access log is kept off
    log = (tmp_path / "run" / "server.log").read_text()
    assert "serving pyfly_hydra.demo:app (asgi) on uvicorn" in log
    assert "pyfly_hydra.access" not in log and '"GET / HTTP/1.1" 200' not in log, log[-2000:]


def test_bench_pins_the_server(tmp_path: Path) -> None:
    first = min(os.sched_getaffinity(0))
    code, record, output = bench(tmp_path, "server=granian", "server.workers=2", f"bench.server_cpus={first}")
    assert code == 0, output
    assert record["server_cpus"] == [first]  # observed on every process of the server tree


@needs_h2load
@pytest.mark.parametrize("server", ["granian", "hypercorn"])
def test_bench_http2_uses_h2load(tmp_path: Path, server: str) -> None:
    """6,000 requests on 4 connections: past hypercorn's 1000 per connection, which h2load cannot reconnect
    after. The bench lifts that cap and says so; a cap the user set is refused in one line."""
    capped = ["bench.requests=6000", "bench.connections=4"]
    code, record, output = bench(tmp_path, f"server={server}", "server.http=2", *capped)
    assert code == 0, output
    assert record["client"] == "h2load" and record["http"] == "2"
    assert record["requests"] == 6000 and record["errors"] == 0
    assert ("h2load does not reconnect: measured without that cap" in output) == (server == "hypercorn")
    if server == "hypercorn":
        cap = "+server.options.hypercorn.keep_alive_max_requests=1000"
        code, _, output = bench(tmp_path, "server=hypercorn", "server.http=2", *capped, cap)
        assert code == 2 and "h2load does not reconnect, so it cannot measure" in output, output


def test_bench_counts_errors(tmp_path: Path) -> None:
    code, record, output = bench(tmp_path, "server=granian", "bench.client=builtin", "bench.path=/missing")
    assert code == 0, output
    assert record["errors"] == record["requests"] > 0


def test_bench_failure_in_a_single_run_is_one_line(tmp_path: Path) -> None:
    code, record, output = bench(tmp_path, "server=hypercorn", env=hidden_modules_env(tmp_path, "hypercorn"))
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines == [lines[0]] and "server=hypercorn: hypercorn is not installed" in lines[0], output
    assert record["status"] == "failed" and "not installed" in record["reason"]


def sweep(tmp_path: Path, *overrides: str, env: dict[str, str] | None = None) -> tuple[Path, str]:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", "mode=bench", *SHORT, *overrides, f"hydra.sweep.dir={sweep_dir}", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return sweep_dir, result.stdout + result.stderr


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((sweep_dir / "summary.csv").read_text())))


def test_two_job_sweep_summary_and_best_yaml(tmp_path: Path) -> None:
    sweep_dir, output = sweep(tmp_path, "server=granian,uvicorn", "loop=uvloop")
    rows = summary_rows(sweep_dir)
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert {row["server"] for row in rows} == {"granian", "uvicorn"}
    assert [row["rank"] for row in rows] == ["1", "2"]
    assert float(rows[0]["rps"]) >= float(rows[1]["rps"]) > 0
    assert rows[0]["ratio_to_best"] == "1.0"
    summary = (sweep_dir / "summary.md").read_text()
    assert "| 1 |" in summary and "vs best" in summary and "client saturated" in summary
    assert summary in output  # printed for the person who ran the sweep
    assert "n=1: no confidence" in summary and "bench.rounds=3" in summary
    assert (sweep_dir / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table" in (sweep_dir / "summary.html").read_text()
    best = (sweep_dir / "best.yaml").read_text()
    assert best.startswith("# @package _global_")
    winner = rows[0]["server"]
    user_conf = tmp_path / "myconf" / "env"
    user_conf.mkdir(parents=True)
    (user_conf / "fastest.yaml").write_text(best)
    composed = run_cli("--config-dir", str(tmp_path / "myconf"), "--cfg", "job", "env=fastest")
    assert composed.returncode == 0, composed.stderr
    job = yaml.safe_load(composed.stdout)
    assert job["server"]["_target_"].endswith(f"{winner.capitalize()}Server")
    assert job["loop"]["_target_"] == "pyfly_hydra.loops.uvloop.UvloopLoop"
    assert job["server"]["access_log"] is False


def test_three_interleaved_rounds_show_n_spread_and_a_verdict(tmp_path: Path) -> None:
    """The demo against itself 5 ms slower per request: the verdict is decided, worse, not a tie."""
    sweep_dir, output = sweep(
        tmp_path,
        "server=granian",
        "loop=uvloop",
        "app=pyfly_hydra.demo:app,delayed_app:app",
        "bench.rounds=3",
        "bench.client=builtin",
        env=child_env(),  # the tests' apps importable
    )
    jobs = sorted((json.loads(path.read_text()) for path in sweep_dir.glob("*/bench.json")), key=lambda r: r["job"])
    # Interleaved: round 1 of both apps, then round 2 of both, then round 3; within each round in the seeded
    # shuffled order (seed 0: delayed_app first in round 1, second in rounds 2 and 3), numbered as they ran.
    apps = ("pyfly_hydra.demo:app", "delayed_app:app")
    grid = [[f"bench.round={n}", f"app={app}"] for n in (1, 2, 3) for app in apps]
    ran = [(int(job[0].split("=")[1]), job[1].removeprefix("app=")) for job in shuffled_within_rounds(grid, seed=0)]
    assert ran[:2] == [(1, "delayed_app:app"), (1, "pyfly_hydra.demo:app")]
    assert [(r["round"], r["app"]) for r in jobs] == ran
    launched = re.findall(r"#(\d+) : bench\.round=(\d)\b.*?\bapp=(\S+)", output)
    assert [(int(number), app.replace("\\:", ":")) for _, number, app in launched] == ran, output  # Hydra escapes ":"
    rows = summary_rows(sweep_dir)
    assert len(rows) == 6 and {row["verdict"] for row in rows} == {"best", "worse"}, rows
    summary = (sweep_dir / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(table) == 2, summary
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table]
    assert [row[1] for row in cells] == ["**best**", "worse"], summary
    assert "app=pyfly_hydra.demo:app`" in cells[0][5] and "app=delayed_app:app`" in cells[1][5], summary
    assert [row[6] for row in cells] == ["3", "3"], summary  # n
    assert all(re.fullmatch(r"[\d,]+-[\d,]+", row[8]) for row in cells), summary  # spread
    assert cells[0][9] == "1.00x", summary  # the best's own ratio
    ratio = re.fullmatch(r"(0\.\d\d)x \((\d\.\d\d)-(\d\.\d\d)\)", cells[1][9])  # the ratio with its interval
    assert ratio and float(ratio[1]) < 0.5 and float(ratio[3]) < 1.0, summary
    assert "Winner: `server=granian loop=uvloop app=pyfly_hydra.demo:app`" in summary  # as typed, not escaped
    assert "workload **plaintext**" in summary
    best = (sweep_dir / "best.yaml").read_text()
    assert "n=3 round(s)" in best
    assert "Tied with" not in best, best
    assert "summary written" in output


@pytest.mark.slow
def test_sweep_presets_run_as_a_sweep_without_dash_m(tmp_path: Path) -> None:
    short = ["bench.duration=1", "bench.warmup=0", "bench.client=builtin", "server=granian"]
    ladder = tmp_path / "ladder"
    result = run_cli("sweep=ladder", "bench.connections=4,16", *short, f"hydra.sweep.dir={ladder}", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = summary_rows(ladder)
    assert sorted(row["label"] for row in rows) == [
        "server=granian bench.connections=16",
        "server=granian bench.connections=4",
    ]
    assert (ladder / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    workers = tmp_path / "workers"
    result = run_cli("sweep=workers", "server.workers=1,2", "bench.rounds=1", *short, f"hydra.sweep.dir={workers}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(row["workers"] for row in summary_rows(workers)) == ["1", "2"]
    assert not (workers / "ladder.png").exists()


def test_sweep_with_a_server_that_is_not_installed(tmp_path: Path) -> None:
    env = hidden_modules_env(tmp_path, "hypercorn")
    sweep_dir, output = sweep(tmp_path, "server=uvicorn,hypercorn", "bench.client=builtin", env=env)
    rows = summary_rows(sweep_dir)
    by_server = {row["server"]: row for row in rows}
    assert by_server["uvicorn"]["status"] == "ok"
    assert by_server["hypercorn"]["status"] == "failed"
    assert "hypercorn is not installed" in by_server["hypercorn"]["reason"]
    assert "Failed jobs" in (sweep_dir / "summary.md").read_text()
    assert "override /server: uvicorn" in (sweep_dir / "best.yaml").read_text()
    assert "1 of 2 jobs failed" in output


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_quiet_without_a_terminal() -> None:
    quiet = io.StringIO()
    with Progress("granian/uvloop x1", 0.6, stream=quiet) as progress:
        progress.update(0.1, 100)
        time.sleep(0.7)
    assert quiet.getvalue() == ""
    terminal = FakeTerminal()
    with Progress("granian/uvloop x1", 0.6, stream=terminal) as progress:
        progress.update(0.1, 100)
        time.sleep(0.7)
    assert "granian/uvloop x1" in terminal.getvalue() and "rps" in terminal.getvalue()


@pytest.mark.slow
def test_a_sweep_over_the_loops_granian_runs_rloop_included(tmp_path: Path) -> None:
    """loop=rloop is chosen by name only: a grid with it completes, every row measured, in summary.md too."""
    sweep_dir, _ = sweep(tmp_path, "server=granian", "loop=uvloop,asyncio,rloop")
    rows = summary_rows(sweep_dir)
    assert {row["loop"] for row in rows} == {"uvloop", "asyncio", "rloop"}, rows
    assert all(row["status"] == "ok" and float(row["rps"]) > 0 and row["errors"] == "0" for row in rows), rows
    assert "| rloop |" in (sweep_dir / "summary.md").read_text()


@pytest.mark.slow
def test_the_six_job_server_by_loop_sweep(tmp_path: Path) -> None:
    """The issue's own command (1 s each instead of 3): every server x loop; six clean rows and a best.yaml."""
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "-m", "mode=bench", "server=granian,uvicorn,hypercorn", "loop=uvloop,asyncio", "bench.duration=1",
        "bench.warmup=1",
        f"hydra.sweep.dir={sweep_dir}", timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = summary_rows(sweep_dir)
    assert len(rows) == 6
    assert {(row["server"], row["loop"]) for row in rows} == {
        (server, loop) for server in ("granian", "uvicorn", "hypercorn") for loop in ("uvloop", "asyncio")
    }
    assert all(row["status"] == "ok" and float(row["rps"]) > 0 and row["errors"] == "0" for row in rows)
    assert (sweep_dir / "summary.png").stat().st_size > 10_000
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())  # the winner: summary.csv's first row
    assert rows[0]["rank"] == "1", rows
    assert best["defaults"] == [{"override /server": rows[0]["server"]}, {"override /loop": rows[0]["loop"]}], best
