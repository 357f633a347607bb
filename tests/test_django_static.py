"""Django's static files outside ``runserver``: the ways the manual gives (docs/guides/apps.md), served for real.

Django serves no static file itself when ``DEBUG`` is off, on any server (404). WhiteNoise (in the app)
works on every server, over WSGI and ASGI; granian can also serve the collected files itself.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVERS, child_env, missing

ASSET = "admin/css/base.css"


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's static files, collected as a deployment does (``manage.py collectstatic``)."""
    root = tmp_path_factory.mktemp("static")
    env = child_env(DJANGO_SETTINGS_MODULE="djproject.settings_static", STATIC_ROOT=str(root))
    subprocess.run([sys.executable, "-m", "django", "collectstatic", "--noinput"], env=env, check=True)
    return root


def assert_served(url: str, static_root: Path) -> None:
    response = httpx.get(f"{url}/static/{ASSET}", timeout=10)
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"].startswith("text/css")
    assert response.content == (static_root / ASSET).read_bytes()


@pytest.mark.parametrize("module", ["asgi", "wsgi"])
@pytest.mark.parametrize("server", SERVERS)
def test_whitenoise_serves_static_files_on_every_server(start_server, static_root: Path, server: str, module: str):
    if importlib.util.find_spec("whitenoise") is None:
        missing("whitenoise is not installed (the dev extra has it)")
    env = child_env(DJANGO_SETTINGS_MODULE="djproject.settings_static", STATIC_ROOT=str(static_root))
    running = start_server(f"server={server}", f"app=djproject.{module}:application", env=env)
    assert_served(running.url, static_root)
    assert running.stop() == 0, running.log()


def test_granian_serves_the_collected_files_itself(start_server, static_root: Path) -> None:
    plain = start_server("server=granian", "app=djproject.wsgi:application")
    assert httpx.get(f"{plain.url}/static/{ASSET}", timeout=10).status_code == 404  # Django alone: none
    mounted = start_server(
        "server=granian",
        "app=djproject.wsgi:application",
        "+server.options.granian.static_path_route=[/static]",
        f"+server.options.granian.static_path_mount=[{static_root}]",
    )
    assert_served(mounted.url, static_root)
    assert mounted.stop() == 0, mounted.log()
