"""``log=json``: every line the runner and its workers write is one JSON object, exceptions in their own field,
the lines written outside logging (the record notice, the error line) included."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import run_cli
from tests.test_first_run import _read_only_launcher

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_a_read_only_run_with_a_failing_request_on_granian_is_all_json(start_server, tmp_path: Path) -> None:
    """The record notice (written before logging is set up) and granian's traceback (logged from Rust, in
    its text) are JSON objects too; the traceback in ``exception``."""
    project = tmp_path / "image"
    project.mkdir()
    (project / "main.py").write_text(APP)
    launcher = _read_only_launcher(project)
    overrides = ("app=main:app", "server=granian", "server.workers=2", "log=json", "server.lifespan=off")
    running = start_server(*overrides, ready_path="/", cwd=project, users_defaults=True, launcher=launcher)
    assert httpx.get(running.url + "/boom").status_code == 500
    assert running.stop() == 0
    lines = [line for line in running.log().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json
    entries = [json.loads(line) for line in lines]
    (notice,) = [entry for entry in entries if "is not writable" in entry["message"]]
    assert notice["level"] == "WARNING" and notice["logger"] == "pyfly_hydra", notice
    (failure,) = [entry for entry in entries if "boom" in entry.get("exception", "")]
    assert failure["exception"].startswith("Traceback (most recent call last):"), failure
    assert failure["exception"].rstrip().endswith("RuntimeError: boom"), failure
    assert "Traceback" not in failure["message"], failure


def test_an_error_under_log_json_is_one_json_line(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(APP)
    result = run_cli("app=main:nope", "log=json", cwd=tmp_path, users_defaults=True)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert (entry["level"], entry["logger"]) == ("ERROR", "pyfly_hydra"), entry
    assert entry["message"] == "app=main:nope: module 'main' has no attribute 'nope'", entry
