"""Start-up: Hydra composes the configuration once per run, not twice; -m still sweeps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra._internal.hydra import Hydra

from pyfly_hydra import cli
from tests.conftest import run_cli


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
