"""``env=dev`` reload, run the way a user runs it: from the app's directory, Hydra's default output dir."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from pyfly_hydra.reload import watched_sources

APP_TEMPLATE = (
    "import os\n"
    "\n"
    "with open('imports.txt', 'a') as imports:  # one line per import of this module, in any process\n"
    "    imports.write(f'{{os.getpid()}}\\n')\n"
    "\n"
    "\n"
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n"
    "        return\n"
    "    await send({{'type': 'http.response.start', 'status': 200, 'headers': []}})\n"
    "    await send({{'type': 'http.response.body', 'body': b'{body}'}})\n"
)
BROKEN = "async def app(scope, receive, send:\n"
IDLE_SECONDS = 10.0
SERVE_WITHIN = 15.0


def imports(project: Path) -> int:
    return len((project / "imports.txt").read_text().splitlines())


def body(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None


def wait_for_body(url: str, expected: str, log: object) -> None:
    deadline = time.monotonic() + SERVE_WITHIN
    while time.monotonic() < deadline:
        if body(url) == expected:
            return
        time.sleep(0.2)
    pytest.fail(f"{expected!r} not served within {SERVE_WITHIN} s:\n{log}")


def settle_imports(project: Path, seconds: float = 3.0) -> int:
    """The import count once it has not changed for ``seconds``."""
    count, since = imports(project), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(0.25)
        if (now := imports(project)) != count:
            count, since = now, time.monotonic()
    return count


@pytest.mark.parametrize("server", ["granian", "uvicorn", "hypercorn"])
def test_env_dev_reloads_once_per_edit_and_waits_out_a_syntax_error(start_server, tmp_path: Path, server: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    source = project / "main.py"
    source.write_text(APP_TEMPLATE.format(body="before"))
    running = start_server(
        "env=dev", f"server={server}", "app=main:app", ready_path="/", cwd=project, users_defaults=True
    )
    assert body(running.url + "/") == "before"
    assert list((project / "outputs").glob("*/*/pyfly_hydra.log")), "the run's record is where Hydra puts it"

    # Ten quiet seconds, with the server writing its own logs (env=dev: debug and access log): no reload.
    started = settle_imports(project)
    deadline = time.monotonic() + IDLE_SECONDS
    while time.monotonic() < deadline:
        assert body(running.url + "/") == "before"
        time.sleep(0.5)
    assert imports(project) == started, f"reloaded without an edit:\n{running.log()}"

    # One edit: the new code is served, after exactly one more import (one worker, one reload).
    source.write_text(APP_TEMPLATE.format(body="after"))
    wait_for_body(running.url + "/", "after", running.log())
    assert settle_imports(project) == started + 1, running.log()

    # A syntax error is reported and the server waits for the fix instead of stopping.
    source.write_text(BROKEN)
    deadline = time.monotonic() + SERVE_WITHIN
    while "SyntaxError" not in running.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "SyntaxError" in running.log()
    time.sleep(1)
    assert running.process.poll() is None, running.log()
    source.write_text(APP_TEMPLATE.format(body="fixed"))
    wait_for_body(running.url + "/", "fixed", running.log())
    assert running.stop() == 0, running.log()


def test_the_watch_rule_leaves_out_records_virtualenvs_vcs_and_caches(tmp_path: Path) -> None:
    (tmp_path / "env" / "lib").mkdir(parents=True)
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    output_dir = tmp_path / "outputs" / "2026-11-24" / "10-00-00"
    sources = watched_sources(
        dirs=[str(tmp_path)], includes=["*.py", "*.html"], excludes=["tests"], output_dir=output_dir
    )
    accepted = ["main.py", "pkg/views.py", "templates/index.html"]
    ignored = [
        "outputs/2026-11-24/10-00-00/pyfly_hydra.log",
        "outputs/2026-11-24/09-00-00/plugin.py",
        "env/lib/site.py",
        ".git/hooks/pre-commit.py",
        ".venv/lib/x.py",
        "pkg/__pycache__/views.cpython-311.pyc",
        "node_modules/a/b.py",
        "tests/test_main.py",
        "main.py~",
        ".main.py.swp",
        "README.md",
    ]
    assert [p for p in accepted if not sources.accepts(tmp_path / p)] == []
    assert [p for p in ignored if sources.accepts(tmp_path / p)] == []
