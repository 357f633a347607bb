"""What a new user meets first: errors that point at their code, run records, --help, clean logs."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPS_DIR, assert_one_line_error, child_env, missing, run_cli


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


def _unshare_read_only(*directories: Path) -> tuple[str, ...]:
    """A launcher (root) whose process sees ``directories`` read-only: bind mounts in its own mount namespace."""
    if shutil.which("unshare") is None:
        missing("running as root without unshare(1): no way to make a directory read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        missing(f"unshare -m is not permitted here: {probe.stderr.decode().strip()}")
    mounts = " && ".join(f"mount --bind {d} {d} && mount -o remount,bind,ro {d} {d}" for d in directories)
    return ("unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh")


def _read_only_launcher(directory: Path) -> tuple[str, ...]:
    """How to start a process whose working directory it cannot write: a read-only bind mount as root."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return ()
    return _unshare_read_only(directory)


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


def test_a_read_only_machine_serves_keeping_no_record(start_server, tmp_path: Path) -> None:
    """A read-only container without a tmpfs: the working directory, /tmp and /var/tmp all read-only. One
    notice line, the run serves and stops cleanly, nothing written (Hydra's .hydra/ and log file are off)."""
    if os.geteuid() != 0:
        missing("needs root: read-only bind mounts over /tmp and /var/tmp in a mount namespace")
    project = tmp_path / "image"
    project.mkdir()
    shutil.copy(APPS_DIR / "flask_app.py", project / "main.py")
    temporary = [Path(d) for d in ("/tmp", "/var/tmp", "/usr/tmp") if Path(d).is_dir()]
    env = child_env()
    env.pop("TMPDIR", None)
    launcher = _unshare_read_only(project, *temporary)
    running = start_server("app=main:app", cwd=project, users_defaults=True, launcher=launcher, env=env)
    assert httpx.get(running.url + "/").text == "flask says hello"
    assert running.stop() == 0, running.log()
    log = running.log()
    notices = [line for line in log.splitlines() if "notice" in line]
    assert len(notices) == 1 and notices[0].startswith("pyfly-hydra: notice: "), log
    assert "no writable temporary directory: this run keeps no record" in notices[0], log
    assert "Traceback" not in log and "Logging error" not in log, log
    assert sorted(p.name for p in project.iterdir()) == ["main.py"]


def test_outputs_ignores_itself_for_git(start_server, tmp_path: Path) -> None:
    """Run from a git repository holding the app: outputs/ (and a sweep's own multirun/ root) never show up
    in git status, as pytest's and ruff's caches do not."""
    project = tmp_path / "repo"
    project.mkdir()
    shutil.copy(APPS_DIR / "flask_app.py", project / "main.py")
    for command in (
        ["init", "-q"],
        ["add", "main.py"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "app"],
    ):
        subprocess.run(["git", *command], cwd=project, check=True)
    running = start_server("app=main:app", cwd=project, users_defaults=True)
    assert httpx.get(running.url + "/").status_code == 200
    assert running.stop() == 0, running.log()
    swept = run_cli("-m", "mode=info", "hydra.sweep.dir=multirun/sweep", cwd=project, users_defaults=True)
    assert swept.returncode == 0, swept.stderr
    assert sorted(p.name for p in project.iterdir()) == [".git", "main.py", "multirun", "outputs"]
    assert list((project / "outputs").glob("*/*/server_info.json")), "the record is kept"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored=no"], cwd=project, capture_output=True, text=True
    )
    assert status.stdout == "", status.stdout


def test_a_server_variable_the_runner_does_not_read_is_said(start_server) -> None:
    """UVICORN_WORKERS (as uvicorn's users set it) is ignored, in one notice line naming the variable to set
    instead; read through ${oc.env:...} it is used, and nothing is said."""
    running = start_server("server=uvicorn", env=child_env(UVICORN_WORKERS="4"))
    assert running.stop() == 0, running.log()
    notices = [line for line in running.log().splitlines() if "UVICORN_WORKERS" in line]
    assert len(notices) == 1, running.log()
    assert "UVICORN_WORKERS=4 is not read" in notices[0] and "set PYFLY_HYDRA_SERVER__WORKERS=4 instead" in notices[0]
    assert "workers 1," in running.log()
    read = start_server(
        "server=uvicorn", "server.workers=${oc.env:UVICORN_WORKERS,1}", env=child_env(UVICORN_WORKERS="2")
    )
    assert read.stop() == 0, read.log()
    assert "workers 2," in read.log() and "UVICORN_WORKERS" not in read.log(), read.log()


def _shared_tmp(tmp_path: Path) -> Path:
    """A temporary directory like /tmp (sticky, writable by all), for ``TMPDIR``."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    return tmp


def _serve_from_read_only_directory(start_server, tmp_path: Path, tmp: Path) -> tuple[str, list[str]]:
    """Serve a request (with a token in its query) from a read-only working directory with ``TMPDIR=tmp``;
    return the log and the names ``tmp`` holds once the run has stopped."""
    project = tmp_path / "image"
    project.mkdir()
    shutil.copy(APPS_DIR / "flask_app.py", project / "main.py")
    launcher = _read_only_launcher(project)
    env = child_env(TMPDIR=str(tmp))
    running = start_server("app=main:app", cwd=project, users_defaults=True, launcher=launcher, env=env)
    assert httpx.get(running.url + "/?token=secret").text == "flask says hello"
    assert running.stop() == 0, running.log()
    return running.log(), sorted(p.name for p in tmp.iterdir())


@pytest.mark.parametrize("planted", ["directory", "symlink", "file"])
def test_a_fallback_record_directory_placed_by_another_user_is_not_used(
    start_server, tmp_path: Path, other_user: pwd.struct_passwd, planted: str
) -> None:
    """$TMPDIR/pyfly-hydra-<uid> made first by someone else (to read the records, or redirect them): one
    notice line, the run serves, and keeps no record, there or anywhere."""
    tmp = _shared_tmp(tmp_path)
    fallback, theirs = tmp / f"pyfly-hydra-{os.getuid()}", tmp / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, other_user.pw_uid, other_user.pw_gid)
    if planted == "directory":
        fallback.mkdir(mode=0o777)
    elif planted == "symlink":
        fallback.symlink_to(theirs)
    else:
        fallback.write_text("theirs\n")
    os.lchown(fallback, other_user.pw_uid, other_user.pw_gid)
    log, left = _serve_from_read_only_directory(start_server, tmp_path, tmp)
    notices = [line for line in log.splitlines() if str(fallback) in line]
    assert len(notices) == 1 and notices[0].startswith("pyfly-hydra: notice: "), log
    assert "this run keeps no record" in notices[0] and "Traceback" not in log, log
    assert left == sorted([fallback.name, theirs.name])  # no scratch directory left behind either
    assert list(theirs.iterdir()) == []
    if planted == "directory":
        assert list(fallback.iterdir()) == [] and fallback.stat().st_uid == other_user.pw_uid
    elif planted == "file":
        assert fallback.read_text() == "theirs\n"


@pytest.mark.parametrize("existing", [None, 0o777])
def test_the_fallback_record_directory_is_ours_alone(start_server, tmp_path: Path, existing: int | None) -> None:
    """Created 0700, or tightened to 0700 when ours but open to others; the record is kept there."""
    tmp = _shared_tmp(tmp_path)
    fallback = tmp / f"pyfly-hydra-{os.getuid()}"
    if existing is not None:
        fallback.mkdir()
        fallback.chmod(existing)
    log, left = _serve_from_read_only_directory(start_server, tmp_path, tmp)
    assert f"this run's record goes to {fallback}/outputs/" in log, log
    assert left == [fallback.name]
    assert stat.S_IMODE(fallback.lstat().st_mode) == 0o700
    assert len(list(fallback.glob("outputs/*/*/server_info.json"))) == 1


def test_hypercorn_logs_each_line_once(start_server) -> None:
    running = start_server("server=hypercorn", "server.access_log=true")
    httpx.get(running.url + "/")
    assert running.stop() == 0
    log = running.log()
    assert log.count("Running on http://") == 1, log
    assert sum('"GET / ' in line for line in log.splitlines()) == 1, log
