"""``app_dir``: a src/ layout and a run from a sub-directory, on every server, one and two workers, reloading.

Each project lives in a temporary directory outside ``PYTHONPATH``: only ``app_dir`` makes it importable,
in the runner and in every worker.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVERS, assert_one_line_error, run_cli

APP = (
    "import os\n"
    "\n"
    "\n"
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n"
    "        return\n"
    "    await send({{'type': 'http.response.start', 'status': 200, 'headers': []}})\n"
    "    await send({{'type': 'http.response.body', 'body': f'{body} {{os.getpid()}}'.encode()}})\n"
    "\n"
    "\n"
    "def create_app():\n"
    "    return app\n"
)


def project(root: Path) -> Path:
    """``root/src/myapp/main.py`` (a src/ layout, served by a factory), ``root/main.py``, and ``root/sub``."""
    package = root / "src" / "myapp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(APP.format(body="src"))
    (root / "main.py").write_text(APP.format(body="flat"))
    (root / "sub").mkdir()
    return root


def answering_pids(url: str, *, body: str, want: int) -> set[str]:
    """Ask on fresh connections until ``want`` workers have answered ``body <pid>`` (or 15 s have passed)."""
    pids: set[str] = set()
    deadline = time.monotonic() + 15
    while len(pids) < want and time.monotonic() < deadline:
        with httpx.Client(timeout=5) as client:
            served, _, pid = client.get(url).text.partition(" ")
        assert served == body
        pids.add(pid)
    return pids


# How each layout is run: from where, with which overrides, and what it serves.
LAYOUTS = {
    "src": ("", ["app=myapp.main:create_app", "app_factory=true", "app_dir=src"], "src"),
    "sub-directory": ("sub", ["app=main:app", "app_dir=.."], "flat"),
}


@pytest.mark.parametrize("server", SERVERS)
def test_a_src_layout_and_a_sub_directory_serve_on_every_worker(start_server, tmp_path: Path, server: str) -> None:
    root = project(tmp_path / "project")
    for where, overrides, body in LAYOUTS.values():
        for workers in (1, 2):
            running = start_server(
                f"server={server}", f"server.workers={workers}", *overrides, cwd=root / where, ready_path="/"
            )
            assert len(answering_pids(running.url, body=body, want=workers)) == workers, running.log()
            assert running.stop() == 0, running.log()


@pytest.mark.parametrize("server", SERVERS)
def test_reload_watches_an_app_dir_outside_the_current_directory(start_server, tmp_path: Path, server: str) -> None:
    root = project(tmp_path / "project")
    running = start_server(
        "env=dev", f"server={server}", "app=main:app", "app_dir=..", cwd=root / "sub", ready_path="/"
    )
    (root / "main.py").write_text(APP.format(body="edited"))
    deadline = time.monotonic() + 15
    while not _serves(running.url, "edited ") and time.monotonic() < deadline:
        time.sleep(0.2)  # a reload stops the old worker before the new one listens: a refused connection meanwhile
    assert _serves(running.url, "edited "), running.log()
    assert running.stop() == 0, running.log()


def _serves(url: str, prefix: str) -> bool:
    try:
        return httpx.get(url, timeout=5).text.startswith(prefix)
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(("where", "app", "fix"), [("", "myapp.main:create_app", "src"), ("sub", "main:app", "..")])
def test_an_app_elsewhere_is_one_line_naming_the_app_dir_to_set(tmp_path: Path, where: str, app: str, fix: str) -> None:
    root = project(tmp_path / "project")
    line = assert_one_line_error(run_cli(f"app={app}", "app_factory=true", cwd=root / where))
    assert line.endswith(f"holds it: add app_dir={fix}"), line


def test_an_app_dir_that_is_no_directory_is_one_line(tmp_path: Path) -> None:
    line = assert_one_line_error(run_cli("app_dir=nope", cwd=tmp_path))
    assert line == f"pyfly-hydra: error: app_dir=nope: no such directory ({tmp_path / 'nope'})", line
