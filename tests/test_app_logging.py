"""An app that configures logging for the whole process as it is imported (Litestar) leaves the run's logging as
it was: in the runner and in every worker, on every server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS_DIR, SERVERS


@pytest.mark.parametrize("server", SERVERS)
def test_a_litestar_app_keeps_every_line_json(start_server, tmp_path: Path, server: str) -> None:
    """As a user runs it, from the app's own directory with Hydra's default record location: log=json,
    2 workers, the access log on."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(APPS_DIR / "litestar_app.py", project / "main.py")
    running = start_server(
        "app=main:app", f"server={server}", "log=json", "server.workers=2", "server.access_log=true",
        cwd=project, users_defaults=True,
    )  # fmt: skip
    assert httpx.get(running.url + "/").text == "litestar says hello"
    assert running.stop() == 0
    lines = [line for line in running.log().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json
    entries = [json.loads(line) for line in lines]
    loggers = {entry["logger"] for entry in entries}
    assert {"pyfly_hydra", "pyfly_hydra.access"} <= loggers, loggers
    assert sum(entry["logger"] == "pyfly_hydra.access" and entry["path"] == "/" for entry in entries) == 1, entries
    (record,) = project.glob("outputs/*/*/pyfly_hydra.log")
    assert "serving main:app (asgi)" in record.read_text()
    assert '"logger": "pyfly_hydra.access"' in record.read_text()
