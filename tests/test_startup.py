"""Start-up: Hydra composes the configuration once per run, not twice; -m still sweeps; the garbage collector is
paused until the task runs, then everything start-up allocated is frozen and it resumes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra._internal.hydra import Hydra

from pyfly_hydra import cli
from tests.conftest import child_env, run_cli


def test_a_run_composes_the_configuration_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    calls = []
    compose = Hydra.compose_config

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("run_mode"))
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(Hydra, "compose_config", counting)
    monkeypatch.setattr(sys, "argv", ["pyfly-hydra", "mode=info", f"hydra.run.dir={tmp_path}"])
    cli.main()
    assert "auto server =" in capsys.readouterr().out
    assert len(calls) == 1, calls


def test_multirun_still_comes_from_the_command_line(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "mode=info", "server=granian,uvicorn", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    assert (sweep / "multirun.yaml").exists()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


SEEN_BY_THE_TASK = """
    import gc, json, sys
    from pyfly_hydra import cli
    from pyfly_hydra.__main__ import main

    seen = {}

    def task(cfg, output_dir):
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        return 0

    cli.MODES["info"] = task
    sys.argv = ["pyfly-hydra", "mode=info"]
    main()
    print(json.dumps(seen))
"""


def test_the_collector_is_paused_for_start_up_and_runs_in_the_task(tmp_path: Path) -> None:
    """Its passes over Hydra's and OmegaConf's objects were ~45 ms of a start (pyfly_hydra.runner.startup)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SEEN_BY_THE_TASK)],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["enabled"], seen
    assert seen["frozen"] > 10_000, seen  # Hydra's, OmegaConf's and the composed configuration's objects
