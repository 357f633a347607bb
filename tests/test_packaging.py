"""The config tree ships inside the wheel, so an installed pyfly-hydra composes without a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

EXPECTED = [
    "pyfly_hydra/conf/config.yaml",
    *(f"pyfly_hydra/conf/server/{name}.yaml" for name in ("auto", "granian", "uvicorn", "hypercorn")),
    *(f"pyfly_hydra/conf/loop/{name}.yaml" for name in ("auto", "uvloop", "winloop", "asyncio")),
    *(f"pyfly_hydra/conf/mode/{name}.yaml" for name in ("serve", "info")),
    *(f"pyfly_hydra/conf/env/{name}.yaml" for name in ("dev", "prod")),
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
