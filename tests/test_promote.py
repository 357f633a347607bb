"""pyfly-hydra-promote: a real sweep's winner becomes an environment with its provenance; served on a machine
unlike the recorded one, it prints one notice. Nothing is faked but the recorded fingerprint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from pyfly_hydra.bench.report.summary import load_records
from pyfly_hydra.bench.report.sweep import write_summary
from tests.conftest import child_env, run_cli
from tests.test_summary_html import record

NOTICE = "notice: this environment was tuned on another machine"
# Every line break YAML 1.1 knows (PyYAML, under OmegaConf and Hydra): each would end a comment line.
BREAKS = ("\n", "\r", "\u2028", "\x85")
# What a recorded string would add to a file that wrote it into a comment: the key app (through a merge key,
# which YAML lets a mapping repeat), and a "#" that turns the rest of the line back into a comment.
INJECTED = "".join(f"{brk}<<: {{app: evilmod:app}}{brk}#" for brk in BREAKS)
ESCAPED = "".join(f"{brk}<<: {{app: evilmod:app}}{brk}#" for brk in (r"\n", r"\r", r"\u2028", r"\x85"))


def _promote(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyfly_hydra.promote", *args], capture_output=True, text=True, timeout=60
    )


def test_promote_writes_an_env_with_provenance_that_serves_and_notices_another_machine(
    tmp_path: Path, start_server
) -> None:
    sweep_dir = tmp_path / "sweep"
    swept = run_cli(
        "-m", "mode=bench", "server=granian,uvicorn", "server.workers=2", "bench.duration=1", "bench.warmup=0",
        "bench.client=builtin", f"hydra.sweep.dir={sweep_dir}", timeout=120,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stdout + swept.stderr
    machine = json.loads((sweep_dir / "0" / "bench.json").read_text())["machine"]
    config_dir = tmp_path / "conf"
    promoted = _promote(str(sweep_dir), "tuned", "--config-dir", str(config_dir))
    assert promoted.returncode == 0, promoted.stderr
    env_file = config_dir / "env" / "tuned.yaml"
    text = env_file.read_text()
    assert text.startswith("# @package _global_\n# Promoted by pyfly-hydra-promote on ")
    assert f"sweep in {sweep_dir}" in text and "median rps" in text and "n=1: no confidence" in text
    assert f"cpus {machine['cpus']}" in text and f"python {machine['python']}" in text
    assert f"granian {machine['granian']}" in text and "workload plaintext" in text

    composed = run_cli("--config-dir", str(config_dir), "--cfg", "job", "env=tuned")
    assert composed.returncode == 0, composed.stderr
    job = yaml.safe_load(composed.stdout)
    assert job["server"]["workers"] == 2 and job["provenance"]["machine"] == machine
    assert job["provenance"]["sweep"] == str(sweep_dir.resolve()) and job["provenance"]["metric"] == "rps"

    here = start_server("--config-dir", str(config_dir), "env=tuned", ready_path="/")
    assert NOTICE not in here.log()

    recorded = yaml.safe_load(text.split("\n", 1)[1])
    recorded["provenance"]["machine"].update(cpus="64", cpu="Imaginary CPU 9000")
    env_file.write_text("# @package _global_\n" + yaml.safe_dump(recorded))
    elsewhere = start_server("--config-dir", str(config_dir), "env=tuned", ready_path="/")
    notices = [line for line in elsewhere.log().splitlines() if NOTICE in line]
    assert len(notices) == 1, elsewhere.log()
    assert f"cpus '64' here '{machine['cpus']}'" in notices[0] and "Imaginary CPU 9000" in notices[0]


def _tainted_sweep(tmp_path: Path) -> Path:
    """Two configurations over three rounds (a tie, the winner picked by p99), every string a job records
    carrying ``INJECTED``, in a sweep directory whose own name carries it too. The server and loop choices
    stay config names (another name is refused) and the app the demo (it is the app that ran)."""
    sweep_dir = tmp_path / f"sweep{INJECTED}"
    machine = {key: f"{value}{INJECTED}" for key, value in record(0, "", 1, 0)["machine"].items()}
    tainted = {
        "server_version": f"2.8.7{INJECTED}", "loop": f"asyncio{INJECTED}", "client": f"wrk{INJECTED}",
        "workload": f"plaintext{INJECTED}", "machine": machine, "server": f"uvicorn{INJECTED}",
        "choices": {"server": "uvicorn", "loop": "asyncio", "env": None},
    }  # fmt: skip
    settings = {"host": "127.0.0.1", "port": 8000, "workers": 2, "reload_excludes": [f"*.tmp{INJECTED}"]}
    settings["_target_"] = "evilmod.Server"  # never recorded by a job: what class to import is no setting
    rounds = {f"winner{INJECTED}": (5.0, [1000.0, 1010.0, 990.0]), f"other{INJECTED}": (7.0, [1001.0, 995.0, 1005.0])}
    jobs = [(label, round_, p99, rps[round_ - 1]) for round_ in (1, 2, 3) for label, (p99, rps) in rounds.items()]
    for job, (label, round_, p99, rps) in enumerate(jobs):
        written = record(job, label, round_, rps, **tainted, p99_ms=p99, server_config=settings)
        (sweep_dir / str(job)).mkdir(parents=True)
        (sweep_dir / str(job) / "bench.json").write_text(json.dumps(written))
    return sweep_dir


def _composed(config_dir: Path, env: str) -> dict:
    composed = run_cli("--config-dir", str(config_dir), "--cfg", "job", f"env={env}")
    assert composed.returncode == 0, composed.stderr
    return yaml.safe_load(composed.stdout)


def test_recorded_line_breaks_stay_data_in_best_yaml_and_the_promoted_env(tmp_path: Path, start_server) -> None:
    """A recorded string with a line break (\\n, \\r, U+2028, U+0085) written into a comment line would start
    a line of YAML: the files must compose to the winner's keys alone, and serving them import nothing else."""
    sweep_dir = _tainted_sweep(tmp_path)
    written = write_summary(sweep_dir, load_records(sweep_dir))
    assert sweep_dir / "best.yaml" in written
    config_dir = tmp_path / "conf"
    (config_dir / "env").mkdir(parents=True)
    shutil.copy(sweep_dir / "best.yaml", config_dir / "env" / "best.yaml")
    promoted = _promote(str(sweep_dir), "tuned", "--config-dir", str(config_dir))
    assert promoted.returncode == 0, promoted.stderr

    baseline = yaml.safe_load(run_cli("--cfg", "job", "server=uvicorn", "loop=asyncio").stdout)
    baseline["server"] |= {"workers": 2, "reload_excludes": [f"*.tmp{INJECTED}"]}
    assert _composed(config_dir, "best") == baseline
    job = _composed(config_dir, "tuned")
    provenance = job.pop("provenance")
    assert baseline.pop("provenance") is None and job == baseline
    machine = {key: f"{value}{INJECTED}" for key, value in record(0, "", 1, 0)["machine"].items()}
    assert provenance["machine"] == machine and provenance["workload"] == f"plaintext{INJECTED}"
    assert provenance["sweep"] == str(sweep_dir.resolve()) and provenance["configuration"] == f"winner{INJECTED}"
    assert provenance["tied_with"] == [f"other{INJECTED}"]
    for path in (config_dir / "env" / "best.yaml", config_dir / "env" / "tuned.yaml"):
        header = [line for line in path.read_text(encoding="utf-8").split("\n") if line.startswith("#")]
        assert any(f"sweep{ESCAPED}" in line for line in header), header  # visible, on its one line

    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    marker = tmp_path / "imported-evilmod"
    (evil_dir / "evilmod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\napp = None\n"
    )
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(evil_dir), env["PYTHONPATH"]])
    for name in ("best", "tuned"):
        running = start_server("--config-dir", str(config_dir), f"env={name}", env=env, cwd=evil_dir)
        assert httpx.get(running.url + "/loop").json()["server"] == "uvicorn"
        assert running.stop() == 0, running.log()
    assert not marker.exists(), "serving a generated file imported evilmod"


def test_promote_refuses_what_it_cannot_promote_in_one_line(tmp_path: Path) -> None:
    outside = tmp_path / "outside"  # a record naming a server config outside the config group
    (outside / "0").mkdir(parents=True)
    leaving = record(
        0, "server=../../evil", 1, 1000.0, choices={"server": "../../evil", "loop": "asyncio", "env": None}
    )
    (outside / "0" / "bench.json").write_text(json.dumps(leaving))
    cases = [
        ((str(tmp_path), "fine"), "no */bench.json"),
        ((str(tmp_path), "not a name"), "NAME='not a name'"),
        ((str(tmp_path), "name\n"), "NAME='name\\n'"),
        ((str(outside), "fine"), "the winner's server '../../evil' is not a config name"),
    ]
    for args, fragment in cases:
        result = _promote(*args, "--config-dir", str(tmp_path / "conf"))
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pyfly-hydra-promote: error:") and fragment in lines[0], lines
