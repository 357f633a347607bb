"""The config tree ships inside the wheel, so an installed pyfly-hydra composes without a checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

EXPECTED = [
    "pyfly_hydra/conf/config.yaml",
    *(f"pyfly_hydra/conf/server/{name}.yaml" for name in ("auto", "granian", "uvicorn", "hypercorn")),
    *(f"pyfly_hydra/conf/loop/{name}.yaml" for name in ("auto", "uvloop", "winloop", "asyncio")),
    *(f"pyfly_hydra/conf/mode/{name}.yaml" for name in ("serve", "info")),
    *(f"pyfly_hydra/conf/env/{name}.yaml" for name in ("dev", "prod")),
    "pyfly_hydra/conf/hydra/sweeper/tune.yaml",
    "pyfly_hydra/conf/sweep/tune.yaml",
    "hydra_plugins/pyfly_hydra_tuner/tune_sweeper.py",
    "pyfly_hydra/conf/hydra/launcher/ray_bench.yaml",
    "hydra_plugins/pyfly_hydra_ray/ray_bench.py",
    "hydra_plugins/pyfly_hydra_ray/_launcher.py",
]


def test_wheel_contains_the_config_tree(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("pyfly_hydra-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in EXPECTED if name not in names]
    assert not missing, missing
    # hydra_plugins is a namespace package shared with every other Hydra plugin: no __init__.py of ours.
    assert "hydra_plugins/__init__.py" not in names


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("extras", ["all", "all,ray"])
def test_every_extra_keeps_hydra_core_1_3(tmp_path: Path, extras: str) -> None:
    """Hydra plugins declare hydra-core>=1.1 and would let pip take a 1.4 pre-release: our own pins hold."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
         f"{ROOT}[{extras}]"],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    versions = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert versions["hydra-core"].startswith("1.3."), versions["hydra-core"]
    assert versions["omegaconf"].startswith("2.3."), versions["omegaconf"]
    if extras == "all,ray":
        assert "hydra-ray-launcher" in versions and "ray" in versions
