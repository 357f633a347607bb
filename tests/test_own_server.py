"""A user's own fourth server, the way a user adds one: an adapter package and ``conf/server/<name>.yaml`` in
their project, no edit to pyfly-hydra. It is served, shown by ``mode=info``, swept and summarised, and the
tuner searches it (with a space of its own), exactly as a built-in server is.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pytest
import yaml

from pyfly_hydra.bench.report.summary import env_body
from tests.conftest import run_cli

# The user's adapter: uvicorn driven by hand through ServerAdapter, with its own key table. Only what it
# declares is honoured; any other key set is refused by pyfly-hydra, naming the server.
ADAPTER = """
from __future__ import annotations

import signal
from typing import Any, ClassVar

from pyfly_hydra.ports import Serving
from pyfly_hydra.servers.base import ServerAdapter
from pyfly_hydra.servers.keys import native, pyfly


class TinyServer(ServerAdapter):
    name: ClassVar[str] = "tiny"
    module: ClassVar[str] = "uvicorn"
    loops: ClassVar[tuple[str, ...]] = ("asyncio", "uvloop")
    native_constructor: ClassVar[str] = "uvicorn:Config"
    reserved_options: ClassVar[dict[str, str | None]] = {
        "app": None, "factory": None, "loop": None, "interface": None, "log_config": None, "access_log": "access_log"
    }
    support = {
        "host": native("host"),
        "port": native("port"),
        "graceful_timeout": native("timeout_graceful_shutdown"),
        "log_level": native("log_level"),
        "backlog": native("backlog"),
        "lifespan": native("lifespan"),
        "access_log": pyfly("AccessLog"),
        "root_path": pyfly("RootPath"),
        "max_body_bytes": pyfly("BodyLimit"),
        "body_timeout": pyfly("BodyTimeout"),
        "proxy_headers": pyfly("ProxyHeaders"),
        "forwarded_allow_ips": pyfly("ProxyHeaders"),
    }

    def native_settings(self, serving: Serving) -> dict[str, Any]:
        p, app, loop, log_config = self.properties, serving.app, serving.loop, serving.log_config
        return dict(
            app=app.import_string, factory=app.factory, interface="asgi3", loop=loop.name,
            host=p.host, port=p.port, backlog=p.backlog, timeout_graceful_shutdown=p.graceful_timeout,
            log_level=p.log_level, lifespan=p.lifespan, access_log=False,
            **({"log_config": log_config} if log_config else {}),
            **self.native_options(),
        )

    def run(self, serving: Serving) -> int:
        import uvicorn

        config = uvicorn.Config(**self.native_settings(serving))
        server = uvicorn.Server(config)
        # uvicorn raises a stop signal again once it has stopped: a no-op handler makes that a clean exit.
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0 if server.started else 1
"""
APP = "async def app(scope, receive, send):\n" + "\n".join(
    [
        "    if scope['type'] != 'http':",
        "        return",
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})",
        "    await send({'type': 'http.response.body', 'body': b'tiny'})",
    ]
)
SHORT_BENCH = ("bench.duration=1", "bench.warmup=0.2", "bench.connections=4", "bench.client=builtin")


def _project(root: Path) -> Path:
    """A project as a user lays one out: their app, their adapter package, their config directory."""
    (root / "tinyserver").mkdir(parents=True)
    (root / "tinyserver" / "__init__.py").write_text(ADAPTER)
    (root / "main.py").write_text(APP + "\n")
    (root / "conf" / "server").mkdir(parents=True)
    (root / "conf" / "server" / "tiny.yaml").write_text("_target_: tinyserver.TinyServer\n")
    return root


def test_a_users_own_server_is_served(start_server, tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    running = start_server("--config-dir", "conf", "server=tiny", "app=main:app", cwd=project, ready_path="/")
    assert httpx.get(running.url + "/").text == "tiny"
    assert running.stop() == 0, running.log()
    assert "on tiny" in running.log() and "(loop uvloop" in running.log(), running.log()


def test_a_users_own_server_refuses_a_key_it_does_not_declare(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    result = run_cli("--config-dir", "conf", "server=tiny", "app=main:app", "server.workers=2", cwd=project)
    assert result.returncode == 2, result.stderr
    assert "server.workers=2: tiny cannot honour it" in result.stderr


def test_mode_info_shows_a_users_own_server(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    result = run_cli("--config-dir", "conf", "mode=info", cwd=project)
    assert result.returncode == 0, result.stderr
    own = result.stdout.split("Your own servers", 1)[1].splitlines()[1]
    assert own.split()[0] == "tiny" and "tinyserver.TinyServer" in own, result.stdout
    header = next(line for line in result.stdout.splitlines() if line.strip().startswith("key "))
    assert header.split() == ["key", "granian", "uvicorn", "hypercorn", "tiny"]
    workers = next(line for line in result.stdout.splitlines() if line.strip().startswith("server.workers "))
    assert workers.split()[-2:] == ["-", "(refused)"]


@pytest.mark.slow
def test_a_users_own_server_is_swept_summarised_and_tuned(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    sweep = tmp_path / "sweep"
    result = run_cli(
        "--config-dir", "conf", "-m", "mode=bench", "app=main:app", "bench.path=/", "server=tiny,uvicorn",
        f"hydra.sweep.dir={sweep}", *SHORT_BENCH, cwd=project, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(path.read_text()) for path in sweep.glob("*/bench.json")]
    assert sorted(record["server"] for record in records) == ["tiny", "uvicorn"], records
    assert all(record["status"] == "ok" and record["rps"] > 0 for record in records), records
    summary = (sweep / "summary.md").read_text()
    assert any(row.startswith("| ") and "| tiny " in row for row in summary.splitlines()), summary
    rows = list(csv.DictReader(io.StringIO((sweep / "summary.csv").read_text())))
    assert sorted(row["server"] for row in rows) == ["tiny", "uvicorn"] and rows[0]["rank"] == "1", rows
    # best.yaml names the winner (tiny and uvicorn are the same server: either may win), as its config option.
    best = yaml.safe_load((sweep / "best.yaml").read_text())
    assert best["defaults"][0] == {"override /server": rows[0]["server"]}, best
    (tiny,) = (record for record in records if record["server"] == "tiny")
    assert env_body(tiny)["defaults"] == [{"override /server": "tiny"}, {"override /loop": "uvloop"}]

    tuned = tmp_path / "tuned"
    result = run_cli(
        "--config-dir", "conf", "-m", "mode=bench", "app=main:app", "bench.path=/", "hydra/sweeper=tune",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0", "server=tiny",
        "hydra.sweeper.confirm_rounds=0",
        "+hydra.sweeper.spaces.tiny={server.backlog:'choice(128,256)'}", f"hydra.sweep.dir={tuned}", *SHORT_BENCH,
        cwd=project, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [json.loads(path.read_text()) for path in tuned.glob("*/bench.json")]
    assert len(trials) == 2 and all(t["server"] == "tiny" and t["status"] == "ok" for t in trials), trials
    assert {t["server_config"]["backlog"] for t in trials} <= {128, 256}, trials
