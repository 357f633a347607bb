"""Configuration from the environment: PYFLY_HYDRA_<KEY>, WEB_CONCURRENCY and PORT, and env_file=.env.

The mapping is called directly first; then real runners (``python -m pyfly_hydra``) on free 127.0.0.1 ports,
each given an explicit environment (``child_env``: ours less every configuring variable, plus the test's).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from pyfly_hydra.bench.process import free_port
from pyfly_hydra.cli import CONFIG_DIR
from pyfly_hydra.config.environment import (
    CONVENTIONS,
    INTERNAL,
    NOT_READ,
    command_line,
    config_groups,
    environment_overrides,
    read_env_file,
    variable_for,
    with_environment,
    without_configuration,
)
from pyfly_hydra.config.known_keys import schema_keys
from pyfly_hydra.config.messages import describe
from pyfly_hydra.errors import ConfigError
from tests.conftest import ROOT, RunningServer, assert_one_line_error, child_env, run_cli

GROUPS = config_groups(CONFIG_DIR)
DISTINCT_PIDS_SECONDS = 15.0


def overrides(environ: dict[str, str]) -> dict[str, str]:
    """``environ``'s overrides, key -> what Hydra is given."""
    return {read.key: read.override for read in environment_overrides(environ, groups=GROUPS)}


def record(running: RunningServer) -> dict:
    return json.loads((running.run_dir / "server_info.json").read_text())


def worker_pids(running: RunningServer, count: int) -> set[int]:
    """The pids answering /loop over new connections, until ``count`` distinct ones did (or time ran out)."""
    pids: set[int] = set()
    deadline = time.monotonic() + DISTINCT_PIDS_SECONDS
    while len(pids) < count and time.monotonic() < deadline:
        pids.add(httpx.get(running.url + "/loop", timeout=5).json()["pid"])
    return pids


# The mapping, called directly.


def test_the_groups_are_the_config_trees_directories_hydras_own_aside() -> None:
    assert {"server", "loop", "env", "mode", "log", "sweep", "bench/workload"} == GROUPS


def test_a_variable_sets_the_key_its_name_spells() -> None:
    found = overrides({"PYFLY_HYDRA_SERVER__WORKERS": "4", "PYFLY_HYDRA_APP": "main:app"})
    assert found == {"server.workers": "server.workers=4", "app": "app=main:app"}
    assert overrides({"PYFLY_HYDRA_SERVER__GRANIAN__RUNTIME_THREADS": "2"}) == {
        "server.granian.runtime_threads": "server.granian.runtime_threads=2"
    }


def test_a_variable_naming_a_group_chooses_its_option() -> None:
    environ = {"PYFLY_HYDRA_SERVER": "uvicorn", "PYFLY_HYDRA_ENV": "prod", "PYFLY_HYDRA_BENCH__WORKLOAD": "mixed"}
    chosen = {"server": "server=uvicorn", "env": "env=prod", "bench/workload": "bench/workload=mixed"}
    assert overrides(environ) == chosen
    assert all(read.group for read in environment_overrides(environ, groups=GROUPS))


def test_every_key_has_its_variable_and_back() -> None:
    for key in schema_keys():
        (read,) = environment_overrides({variable_for(key): "1"}, groups=GROUPS)
        assert read.key == key and read.variable == variable_for(key), key


def test_a_servers_own_option_is_added() -> None:
    key = "server.options.uvicorn.h11_max_incomplete_event_size"
    assert overrides({variable_for(key): "100"}) == {key: f"++{key}=100"}


@pytest.mark.parametrize("value", ["4", "true", "null", "[src,lib]", "main:app", "/srv/my app", "0.5"])
def test_a_plain_value_goes_as_it_is_for_the_schema_to_type(value: str) -> None:
    assert overrides({"PYFLY_HYDRA_APP": value}) == {"app": f"app={value}"}


@pytest.mark.parametrize(
    "value", ["10.0.0.1,10.0.0.2", "a=b", "range(1,3)", "'quoted'", "it's", "a\\,b", "x${", "glob(*)", "a b,c"]
)
def test_a_value_the_grammar_would_sweep_or_refuse_arrives_as_written(value: str) -> None:
    (read,) = environment_overrides({"PYFLY_HYDRA_SERVER__FORWARDED_ALLOW_IPS": value}, groups=GROUPS)
    assert read.override != f"server.forwarded_allow_ips={value}"
    parsed = OverridesParser.create().parse_override(read.override)
    assert not parsed.is_sweep_override() and parsed.value() == value, read.override


def test_the_platforms_variables_set_workers_and_port_below_pyfly_hydras() -> None:
    assert overrides({"WEB_CONCURRENCY": "3", "PORT": "9000"}) == {
        "server.workers": "server.workers=3",
        "server.port": "server.port=9000",
    }
    (workers,) = environment_overrides({"WEB_CONCURRENCY": "3", "PYFLY_HYDRA_SERVER__WORKERS": "2"}, groups=GROUPS)
    assert (workers.variable, workers.override) == ("PYFLY_HYDRA_SERVER__WORKERS", "server.workers=2")
    assert set(CONVENTIONS) == {"WEB_CONCURRENCY", "PORT"} and not set(CONVENTIONS) & set(NOT_READ)


def test_pyfly_hydras_own_variables_are_no_settings() -> None:
    assert {"PYFLY_HYDRA_WORKER_APP", "PYFLY_HYDRA_FAILURE_REPORT", "PYFLY_HYDRA_FULL_ERROR"} <= INTERNAL
    assert overrides(dict.fromkeys(INTERNAL, "1")) == {}
    settings = {variable_for(key) for key in [*schema_keys(), *GROUPS]}
    assert not INTERNAL & settings, "an internal variable is named like a setting"


@pytest.mark.parametrize(
    ("variable", "fragments"),
    [
        ("PYFLY_HYDRA_SERVER__WROKERS", ["server.wrokers: unknown key; did you mean server.workers?"]),
        ("PYFLY_HYDRA_NOPE", ["nope: unknown key", "or a config group: bench/workload, env"]),
        ("PYFLY_HYDRA_SERVER___TARGET_", ["server._target_: unknown key"]),
    ],
)
def test_a_name_that_is_no_key_nor_group_is_refused(variable: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        environment_overrides({variable: "2"}, groups=GROUPS)
    assert str(refused.value).startswith(f"{variable}=2: "), refused.value
    for fragment in fragments:
        assert fragment in str(refused.value)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], ["server=uvicorn", "server.workers=2"]),
        (["server.workers=1"], ["server=uvicorn", "server.workers=1"]),
        (["server=granian"], ["server.workers=2", "server=granian"]),
        (["--cfg", "job"], ["server=uvicorn", "server.workers=2", "--cfg", "job"]),
        (["--cfg", "job", "app=x:y"], ["--cfg", "job", "server=uvicorn", "server.workers=2", "app=x:y"]),
        (["-m", "mode=info", "server.workers=1,4"], ["-m", "server=uvicorn", "mode=info", "server.workers=1,4"]),
        (["--help"], ["server=uvicorn", "server.workers=2", "--help"]),
    ],
)
def test_the_environment_goes_before_the_command_line_which_wins(arguments: list[str], expected: list[str]) -> None:
    environ = {"PYFLY_HYDRA_SERVER": "uvicorn", "PYFLY_HYDRA_SERVER__WORKERS": "2"}
    spliced, kept = with_environment(command_line(arguments), environ, groups=GROUPS)
    assert spliced == expected
    given = {argument.partition("=")[0] for argument in arguments if "=" in argument}
    assert {read.key for read in kept} == {"server", "server.workers"} - given


def test_an_env_file_sets_what_is_not_set_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path(".env").write_text("# comment\nPYFLY_HYDRA_SERVER__WORKERS=3\nGREETING='hello there'\nPORT=9000\n")
    environ = {"PORT": "8080"}
    read_env_file(".env", environ)
    assert environ == {"PYFLY_HYDRA_SERVER__WORKERS": "3", "GREETING": "hello there", "PORT": "8080"}
    with pytest.raises(ConfigError, match=r"^env_file=missing\.env: cannot be read: No such file or directory"):
        read_env_file("missing.env", environ)


def test_a_child_run_with_a_complete_configuration_reads_none_of_it() -> None:
    environ = {"PYFLY_HYDRA_SERVER": "uvicorn", "WEB_CONCURRENCY": "2", "PORT": "1", "PYFLY_HYDRA_WORKER_APP": "{}"}
    assert without_configuration({**environ, "HOME": "/root"}) == {"PYFLY_HYDRA_WORKER_APP": "{}", "HOME": "/root"}


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        ({"PYFLY_HYDRA_SERVER__WORKERS": "abc"}, "PYFLY_HYDRA_SERVER__WORKERS=abc: server.workers: must be an integer"),
        ({"PORT": "http"}, "PORT=http: server.port: must be an integer"),
        ({"PYFLY_HYDRA_SERVER": "nginx"}, "PYFLY_HYDRA_SERVER=nginx: server: no such server config; choose one of"),
    ],
)
def test_a_compose_error_names_the_variable(environ: dict[str, str], line: str) -> None:
    made = environment_overrides(environ, groups=GROUPS)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"), pytest.raises(Exception) as failed:
        compose("config", overrides=[read.override for read in made])
    message, code = describe(failed.value, from_environment=made)
    assert message.startswith(line) and code == 2, message


# Real runners.


def test_pyfly_hydra_variables_choose_the_server_and_its_workers(start_server) -> None:
    env = child_env(PYFLY_HYDRA_SERVER="uvicorn", PYFLY_HYDRA_SERVER__WORKERS="2")
    running = start_server(env=env)
    info = record(running)
    assert (info["server"], info["workers"]) == ("uvicorn", 2), info
    assert info["from_environment"] == {"server": "PYFLY_HYDRA_SERVER", "server.workers": "PYFLY_HYDRA_SERVER__WORKERS"}
    said = [line for line in running.log().splitlines() if "from the environment:" in line]
    assert len(said) == 1 and said[0].endswith(
        "from the environment: server=uvicorn (PYFLY_HYDRA_SERVER), server.workers=2 (PYFLY_HYDRA_SERVER__WORKERS)"
    ), running.log()
    assert len(worker_pids(running, 2)) == 2, running.log()
    assert running.stop() == 0, running.log()


def test_the_platforms_web_concurrency_and_port_alone(tmp_path: Path) -> None:
    """No server.port on the command line: the runner listens on $PORT, with $WEB_CONCURRENCY workers."""
    port = free_port()
    run_dir, log_path = tmp_path / "run", tmp_path / "server.log"
    env = child_env(WEB_CONCURRENCY="2", PORT=str(port))
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyfly_hydra", "server=uvicorn", f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    running = RunningServer(process, port, log_path, run_dir)
    try:
        running.wait_ready()
        info = record(running)
        assert (info["workers"], info["port"]) == (2, port), info
        assert info["from_environment"] == {"server.workers": "WEB_CONCURRENCY", "server.port": "PORT"}
        assert len(worker_pids(running, 2)) == 2, running.log()
        assert running.stop() == 0, running.log()
    finally:
        running.kill_group()


def test_the_command_line_beats_the_environment(start_server) -> None:
    env = child_env(PYFLY_HYDRA_SERVER="uvicorn", PYFLY_HYDRA_SERVER__WORKERS="2", WEB_CONCURRENCY="3")
    running = start_server("server.workers=1", env=env)
    info = record(running)
    assert (info["server"], info["workers"]) == ("uvicorn", 1), info
    assert info["from_environment"] == {"server": "PYFLY_HYDRA_SERVER"}, "only what was applied"
    assert "from the environment: server=uvicorn (PYFLY_HYDRA_SERVER)\n" in running.log(), running.log()
    assert running.stop() == 0, running.log()


@pytest.mark.parametrize(
    ("environ", "fragments"),
    [
        ({"PYFLY_HYDRA_SERVER__WORKERS": "abc"}, ["PYFLY_HYDRA_SERVER__WORKERS=abc: server.workers: must be an int"]),
        ({"PYFLY_HYDRA_SERVER__WORKERS": "-1"}, ["PYFLY_HYDRA_SERVER__WORKERS=-1: server.workers: must be"]),
        ({"WEB_CONCURRENCY": "many"}, ["WEB_CONCURRENCY=many: server.workers: must be an integer"]),
        ({"PYFLY_HYDRA_SERVER__WROKERS": "2"}, ["PYFLY_HYDRA_SERVER__WROKERS=2: server.wrokers: unknown key"]),
        ({"PYFLY_HYDRA_SERVER": "nginx"}, ["PYFLY_HYDRA_SERVER=nginx: server: no such server config"]),
        ({"PYFLY_HYDRA_ENV_FILE": "missing.env"}, ["env_file=missing.env: cannot be read"]),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(environ: dict[str, str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli(env=child_env(**environ)), *fragments)


def test_the_values_arrive_as_written_and_hydras_flags_still_work() -> None:
    env = child_env(PYFLY_HYDRA_SERVER__FORWARDED_ALLOW_IPS="10.0.0.1,10.0.0.2", PYFLY_HYDRA_SERVER__WORKERS="2")
    result = run_cli("--cfg", "job", "server.port=9000", env=env)
    assert result.returncode == 0, result.stderr
    server = yaml.safe_load(result.stdout)["server"]
    assert (server["forwarded_allow_ips"], server["workers"], server["port"]) == ("10.0.0.1,10.0.0.2", 2, 9000)
    assert "pyfly-hydra" in run_cli("--help", env=env).stdout


def test_an_env_file_in_the_run_directory(start_server, tmp_path: Path) -> None:
    """``env_file=.env``: its PYFLY_HYDRA_ lines configure, and the app sees its other variables; one the
    environment sets already keeps its value."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(
        "import json, os\n\n\n"
        "async def app(scope, receive, send):\n"
        "    assert scope['type'] == 'http'\n"
        "    body = json.dumps({name: os.environ.get(name) for name in ('GREETING', 'STAGE')}).encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"
    )
    (project / ".env").write_text(
        "PYFLY_HYDRA_SERVER=uvicorn\nPYFLY_HYDRA_SERVER__WORKERS=2\nGREETING=hello from .env\nSTAGE=from .env\n"
    )
    running = start_server("env_file=.env", "app=main:app", cwd=project, env=child_env(STAGE="outer"), ready_path="/")
    assert httpx.get(running.url + "/").json() == {"GREETING": "hello from .env", "STAGE": "outer"}
    info = record(running)
    assert (info["server"], info["workers"]) == ("uvicorn", 2), info
    assert info["from_environment"] == {"server": "PYFLY_HYDRA_SERVER", "server.workers": "PYFLY_HYDRA_SERVER__WORKERS"}
    assert running.stop() == 0, running.log()


def test_an_env_file_set_in_a_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "myconf" / "env").mkdir(parents=True)
    (tmp_path / "myconf" / "env" / "staging.yaml").write_text("# @package _global_\nenv_file: .env\n")
    (tmp_path / ".env").write_text("GREETING=hello\n")
    result = run_cli("--config-dir", "myconf", "env=staging", "mode=info", cwd=tmp_path, users_defaults=True)
    assert_one_line_error(result, "env_file=.env: is read before composing", "PYFLY_HYDRA_ENV_FILE")


def test_mode_info_lists_them() -> None:
    result = run_cli("mode=info", env=child_env(PYFLY_HYDRA_SERVER__WORKERS="2", PORT="9000"))
    assert result.returncode == 0, result.stderr
    section = result.stdout.partition("From the environment")[2].split("\n\n")[0].splitlines()[1:]
    assert section == ["  server.port=9000 (PORT)", "  server.workers=2 (PYFLY_HYDRA_SERVER__WORKERS)"], section
    none = run_cli("mode=info").stdout.partition("From the environment")[2].split("\n\n")[0].splitlines()[1:]
    assert none == ["  none"], none


def test_a_sweep_on_the_command_line_beats_the_environment(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    env = child_env(PYFLY_HYDRA_SERVER="uvicorn", PYFLY_HYDRA_SERVER__WORKERS="2")
    result = run_cli("-m", "mode=info", "server.workers=1,4", f"hydra.sweep.dir={sweep}", env=env)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if line.startswith("  ") and "(PYFLY_HYDRA_" in line]
    assert said == ["  server=uvicorn (PYFLY_HYDRA_SERVER)"] * 2, result.stdout
    task = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["overrides"]["task"]
    assert task == ["server=uvicorn", "mode=info", "server.workers=1,4"], task


def test_the_bench_server_child_takes_its_configuration_from_the_job_only(tmp_path: Path) -> None:
    """mode=bench serves the job's resolved configuration in a child run: with env_file=null and no configuring
    variable (a command-line sweep of a key the environment also sets would otherwise be undone there)."""
    from pyfly_hydra.bench.process import ServerProcess
    from pyfly_hydra.bench.task import serve_command

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["server=uvicorn", "server.workers=2", "env_file=.env"])
    port = free_port()
    env = without_configuration(child_env(PYFLY_HYDRA_SERVER__WORKERS="1", PYFLY_HYDRA_SERVER="granian"))
    child = ServerProcess(serve_command(cfg, port=port, output_dir=tmp_path), log_path=tmp_path / "log", env=env)
    running = RunningServer(child.process, port, child.log_path, tmp_path / "server")
    try:
        running.wait_ready()
        info = record(running)
        assert (info["server"], info["workers"], info["from_environment"]) == ("uvicorn", 2, {}), info
        assert running.stop() == 0, running.log()
    finally:
        running.kill_group()
