"""What a new user meets first: errors that point at their code, run records, --help, clean logs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS_DIR, assert_one_line_error, child_env, run_cli


def test_a_syntax_error_in_the_app_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import os\n\n\ndef broken(:\n    pass\n")
    line = assert_one_line_error(run_cli("app=main:app", cwd=tmp_path))
    assert "main.py:4" in line and "SyntaxError" in line


def test_an_app_raising_at_import_names_the_users_line_not_the_librarys(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text("import os\n\nDATABASE_URL = os.environ['DATABASE_URL']\n")
    (tmp_path / "main.py").write_text("import settings\n\napp = None\n")
    env = child_env()
    env.pop("DATABASE_URL", None)
    line = assert_one_line_error(run_cli("app=main:app", cwd=tmp_path, env=env))
    assert "settings.py:3" in line and "KeyError" in line, line


def test_full_error_shows_the_apps_own_traceback(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def connect():\n    raise RuntimeError('db url missing')\n\n\nconnect()\n")
    result = run_cli("app=main:app", cwd=tmp_path, env=child_env(HYDRA_FULL_ERROR="1"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert 'main.py", line 2, in connect' in result.stderr and "db url missing" in result.stderr, result.stderr


def test_mode_info_leaves_no_run_directory(tmp_path: Path) -> None:
    result = run_cli("mode=info", cwd=tmp_path, users_defaults=True)
    assert result.returncode == 0 and "auto server =" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_help_is_pyfly_hydras_own() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for text in ("pyfly-hydra: run, benchmark and tune", "app=MODULE:ATTR", "interface=auto|asgi|wsgi", "server: auto"):
        assert text in result.stdout, result.stdout
    assert "Powered by Hydra" not in result.stdout


def _read_only_launcher(directory: Path) -> tuple[str, ...]:
    """How to start a process whose working directory it cannot write: a read-only bind mount as root."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return ()
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare(1): no way to make a read-only working directory")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here: {probe.stderr.decode().strip()}")
    mount = f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory} {directory}"
    return ("unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh")


def test_a_read_only_working_directory_still_serves(start_server, tmp_path: Path) -> None:
    project = tmp_path / "image"
    project.mkdir()
    shutil.copy(APPS_DIR / "flask_app.py", project / "main.py")
    launcher = _read_only_launcher(project)
    running = start_server("app=main:app", cwd=project, users_defaults=True, launcher=launcher)
    assert httpx.get(running.url + "/").text == "flask says hello"
    assert "is not writable; this run's record goes to" in running.log()
    assert running.stop() == 0, running.log()
    assert sorted(p.name for p in project.iterdir()) == ["main.py"]


def test_hypercorn_logs_each_line_once(start_server) -> None:
    running = start_server("server=hypercorn", "server.access_log=true")
    httpx.get(running.url + "/")
    assert running.stop() == 0
    log = running.log()
    assert log.count("Running on http://") == 1, log
    assert sum('"GET / ' in line for line in log.splitlines()) == 1, log
