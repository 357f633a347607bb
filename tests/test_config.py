"""Composition: env overrides, a user's own config dir and adapter, app import strings, run records."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from pyfly_hydra.registry import SERVER_NAMES
from pyfly_hydra.system.cpus import usable_cpus
from tests.conftest import ROOT, child_env, run_cli


def job_config(*overrides: str, cwd: Path | None = None) -> dict:
    result = run_cli("--cfg", "job", "--resolve", *overrides, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_defaults_are_safe() -> None:
    cfg = job_config()
    assert cfg["app"] == "pyfly_hydra.demo:app"
    assert cfg["server"]["host"] == "127.0.0.1"
    assert cfg["server"]["port"] == 8000
    assert cfg["server"]["workers"] == 1
    assert cfg["server"]["_target_"] == "pyfly_hydra.servers.granian.adapter.GranianServer"
    assert cfg["loop"]["_target_"] == "pyfly_hydra.loops.uvloop.UvloopLoop"
    assert cfg["mode"] == "serve"
    assert cfg["server"]["access_log"] is False
    assert cfg["server"]["worker_timeout"] == 30


def test_env_prod() -> None:
    server = job_config("env=prod")["server"]
    assert server["host"] == "0.0.0.0"
    assert server["workers"] == 0
    assert server["access_log"] is False


def test_env_dev() -> None:
    server = job_config("env=dev")["server"]
    assert server["reload"] is True
    assert server["workers"] == 1
    assert server["log_level"] == "debug"
    assert server["access_log"] is True
    assert server["worker_timeout"] is None  # a breakpoint stops the loop: no watchdog kills the worker


def test_command_line_beats_env() -> None:
    assert job_config("env=prod", "server.host=127.0.0.1")["server"]["host"] == "127.0.0.1"


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    (conf / "env").mkdir(parents=True)
    (conf / "server").mkdir()
    (conf / "env" / "staging.yaml").write_text("# @package _global_\nserver:\n  workers: 3\n  keep_alive_timeout: 20\n")
    (conf / "loop").mkdir()
    (conf / "loop" / "myloop.yaml").write_text("_target_: custom_loop.MyLoop\n")
    (conf / "server" / "mine.yaml").write_text("_target_: custom_adapter.MyServer\n")
    (conf / "server" / "broken.yaml").write_text("_target_: custom_adapter.NotAServer\n")
    return conf


def test_user_config_dir_adds_an_env(user_conf: Path) -> None:
    server = job_config("--config-dir", str(user_conf), "env=staging")["server"]
    assert server["workers"] == 3
    assert server["keep_alive_timeout"] == 20
    assert server["host"] == "127.0.0.1"  # the rest still comes from the shipped tree


def test_user_adapter_is_validated_like_the_built_in_ones(user_conf: Path) -> None:
    result = run_cli("--config-dir", str(user_conf), "server=mine", "server.workers=-1")
    assert result.returncode == 2
    assert "server.workers=-1: must be an integer 0..1024" in result.stderr


def test_user_adapter_that_is_not_a_server(user_conf: Path) -> None:
    result = run_cli("--config-dir", str(user_conf), "server=broken")
    assert result.returncode == 2
    assert "server._target_=custom_adapter.NotAServer: does not implement ApplicationServerPort" in result.stderr


def test_user_adapter_serves_logs_and_stops(start_server, user_conf: Path) -> None:
    running = start_server("--config-dir", str(user_conf), "server=mine", "loop=asyncio")
    assert httpx.get(running.url + "/loop").json()["server"] == "mine"
    assert running.stop() == 0
    assert "serving pyfly_hydra.demo:app (asgi) on mine" in running.log()


def test_user_loop_runs_in_every_uvicorn_worker(start_server, user_conf: Path) -> None:
    running = start_server("--config-dir", str(user_conf), "server=uvicorn", "loop=myloop", "server.workers=2")
    loops = {httpx.get(running.url + "/loop", headers={"connection": "close"}).json()["loop"] for _ in range(20)}
    assert loops == {"custom_loop.MyEventLoop"}
    assert running.stop() == 0


def test_user_loop_on_a_server_that_cannot_run_it(user_conf: Path) -> None:
    result = run_cli("--config-dir", str(user_conf), "server=granian", "loop=myloop")
    assert result.returncode == 2
    assert "loop=myloop: granian cannot run this loop; it runs uvloop, asyncio, winloop" in result.stderr


@pytest.mark.parametrize(("server", "http"), [("granian", "1"), ("uvicorn", "1"), ("hypercorn", "auto")])
def test_the_startup_line_says_the_http_the_server_speaks(start_server, server: str, http: str) -> None:
    """server.http=auto in cleartext: granian and uvicorn speak HTTP/1.1 only, hypercorn both (it said auto)."""
    running = start_server(f"server={server}")
    assert f", http {http}, tls off)" in running.log(), running.log()
    assert json.loads((running.run_dir / "server_info.json").read_text())["http"] == http


def test_startup_line_and_run_record(start_server) -> None:
    running = start_server("server=uvicorn", "loop=asyncio")
    lines = [line for line in running.log().splitlines() if "serving " in line]
    assert len(lines) == 1
    line = lines[0]
    for part in ("pyfly_hydra.demo:app", "uvicorn", "loop asyncio", "workers 1", "http 1", running.url):
        assert part in line, line
    record = json.loads((running.run_dir / "server_info.json").read_text())
    assert record["server"] == "uvicorn"
    assert record["loop"] == "asyncio"
    assert record["workers"] == 1
    assert record["port"] == running.port
    assert record["url"] == running.url
    overrides = yaml.safe_load((running.run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "server=uvicorn" in overrides
    assert running.stop() == 0


def test_workers_zero_means_one_per_cpu(start_server) -> None:
    running = start_server("server=uvicorn", "server.workers=0")
    record = json.loads((running.run_dir / "server_info.json").read_text())
    assert record["workers"] == usable_cpus()
    assert f"server.workers=0: using {usable_cpus()} workers" in running.log()
    assert running.stop() == 0


def test_app_from_current_directory(start_server, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'from main.py'})\n"
    )
    env = child_env()
    for server in ("granian", "uvicorn", "hypercorn"):
        running = start_server(
            f"server={server}", "server.workers=2", "app=main:app", ready_path="/", cwd=project, env=env
        )
        assert httpx.get(running.url + "/").text == "from main.py"
        assert running.stop() == 0


@pytest.mark.parametrize("server", ["granian", "uvicorn", "hypercorn"])
def test_app_factory(start_server, server: str) -> None:
    running = start_server(f"server={server}", "app=lifespan_app:create_app", "app_factory=true")
    assert httpx.get(running.url + "/json").json() == {"message": "Hello, world!"}
    assert running.stop() == 0


def test_the_sweep_presets_list_every_built_in_server_in_the_registry() -> None:
    """The presets' YAML cannot import the registry, so it is checked against it: a new server joins them."""
    for preset in ("servers", "tune"):
        text = (ROOT / "conf" / "sweep" / f"{preset}.yaml").read_text()
        assert f"server: {','.join(SERVER_NAMES)}" in text, preset
