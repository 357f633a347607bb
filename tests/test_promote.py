"""pyfly-hydra-promote: a real sweep's winner becomes an environment with its provenance; served on a machine
unlike the recorded one, it prints one notice. Nothing is faked but the recorded fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import run_cli

NOTICE = "notice: this environment was tuned on another machine"


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


def test_promote_refuses_what_it_cannot_promote_in_one_line(tmp_path: Path) -> None:
    cases = [
        ((str(tmp_path), "fine"), "no */bench.json"),
        ((str(tmp_path), "not a name"), "NAME='not a name'"),
    ]
    for args, fragment in cases:
        result = _promote(*args, "--config-dir", str(tmp_path / "conf"))
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pyfly-hydra-promote: error:") and fragment in lines[0], lines
