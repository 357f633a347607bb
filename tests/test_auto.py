"""The `auto` cascade, proven in real subprocesses where higher-priority modules are truly not importable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from omegaconf import OmegaConf

from pyfly_hydra.config.resolvers import LOOP_TARGETS, SERVER_TARGETS, register_resolvers, resolve_auto
from tests.conftest import child_env, hidden_modules_env, run_cli

CASCADE = [
    ((), "granian"),
    (("granian",), "uvicorn"),
    (("granian", "uvicorn"), "hypercorn"),
]


@pytest.mark.parametrize("hidden,expected", CASCADE)
def test_auto_server_resolves_to_best_installed(tmp_path: Path, hidden: tuple[str, ...], expected: str) -> None:
    result = run_cli("--cfg", "job", "--resolve", env=hidden_modules_env(tmp_path, *hidden))
    assert result.returncode == 0, result.stderr
    assert f"_target_: {SERVER_TARGETS[expected]}" in result.stdout


@pytest.mark.parametrize("hidden,expected", CASCADE[1:])
def test_auto_serves_on_the_fallback_server(start_server, tmp_path: Path, hidden, expected: str) -> None:
    running = start_server(env=hidden_modules_env(tmp_path, *hidden))
    assert httpx.get(running.url + "/loop").json()["server"] == expected
    info = (running.run_dir / "server_info.json").read_text()
    assert f'"server": "{expected}"' in info
    assert running.stop() == 0


def test_auto_loop_falls_back_to_asyncio(start_server, tmp_path: Path) -> None:
    running = start_server("server=uvicorn", env=hidden_modules_env(tmp_path, "uvloop"))
    assert httpx.get(running.url + "/loop").json()["loop"] == "asyncio.unix_events._UnixSelectorEventLoop"
    assert running.stop() == 0


def test_loop_cascade_per_platform_in_process() -> None:
    register_resolvers()
    assert resolve_auto("loop", "linux") == LOOP_TARGETS["uvloop"]
    assert resolve_auto("loop", "darwin") == LOOP_TARGETS["uvloop"]
    # winloop is not installable on Linux: the Windows cascade skips uvloop and lands on asyncio.
    assert resolve_auto("loop", "win32") == LOOP_TARGETS["asyncio"]
    node = OmegaConf.create({"linux": "${auto:loop,linux}", "windows": "${auto:loop,win32}"})
    assert node.linux == LOOP_TARGETS["uvloop"]
    assert node.windows == LOOP_TARGETS["asyncio"]


def test_winloop_is_chosen_on_windows_when_installed(tmp_path: Path) -> None:
    """A real (if tiny) `winloop` package on the path: the win32 cascade picks it, linux still picks uvloop."""
    package = tmp_path / "site" / "winloop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import asyncio\nnew_event_loop = asyncio.new_event_loop\n")
    env = child_env(PYTHONPATH=f"{tmp_path / 'site'}")
    code = (
        "from pyfly_hydra.config.resolvers import resolve_auto as r; "
        "print(r('loop', 'win32')); print(r('loop', 'linux'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [LOOP_TARGETS["winloop"], LOOP_TARGETS["uvloop"]]


def test_unknown_auto_kind_is_refused() -> None:
    register_resolvers()
    with pytest.raises(Exception, match="takes 'server' or 'loop'"):
        _ = OmegaConf.create({"x": "${auto:database}"}).x


def test_info_says_what_auto_picks_and_why(tmp_path: Path) -> None:
    result = run_cli("mode=info", env=hidden_modules_env(tmp_path, "granian"))
    assert result.returncode == 0, result.stderr
    assert "auto server = uvicorn (granian not installed)" in result.stdout
    assert "auto loop = uvloop" in result.stdout
    assert "server.max_concurrent_connections" in result.stdout
    assert "limit_concurrency" in result.stdout
    assert "Load clients for mode=bench" in result.stdout
    assert "builtin    available" in result.stdout
