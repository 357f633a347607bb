"""Bad input: each case exits non-zero with one line naming the key, the value and what is allowed."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import APPS_DIR, SERVERS, assert_one_line_error, hidden_modules_env, run_cli

CASES = {
    "unknown server": (["server=nope"], ["server=nope", "granian", "uvicorn", "hypercorn"]),
    "unknown loop": (["loop=nope"], ["loop=nope", "uvloop", "asyncio"]),
    "loop not installed": (["loop=winloop"], ["loop=winloop", "not installed", "pyfly-hydra[winloop]"]),
    "workers not an int": (["server.workers=abc"], ["server.workers=abc", "must be an integer"]),
    "negative workers": (["server.workers=-1"], ["server.workers=-1", "0..1024"]),
    "port out of range": (["server.port=70000"], ["server.port=70000", "1..65535"]),
    "misspelled key": (["server.wrkers=2"], ["server.wrkers", "unknown key", "did you mean server.workers"]),
    "misspelled top-level key": (["ap=x:y"], ["ap", "unknown key"]),
    "bad http": (["server.http=4"], ["server.http=4", "auto, 1, 2, 3"]),
    "bad log level": (["server.log_level=loud"], ["server.log_level=loud", "debug"]),
    "missing cert file": (
        ["server.ssl_certfile=/nonexistent/cert.pem", "server.ssl_keyfile=/nonexistent/key.pem"],
        ["server.ssl_certfile=/nonexistent/cert.pem", "no such file"],
    ),
    "cert without key": (["server.ssl_certfile=pyproject.toml"], ["server.ssl_keyfile", "required"]),
    "key without cert": (["server.ssl_keyfile=pyproject.toml"], ["server.ssl_certfile", "required"]),
    "http2 on uvicorn": (["server=uvicorn", "server.http=2"], ["server.http=2", "uvicorn", "HTTP/1.1 only"]),
    "app does not import": (["app=no_such_module:app"], ["app=no_such_module:app", "no module named"]),
    "app import raises": (["app=broken_app:app"], ["app=broken_app:app", "RuntimeError", "boom"]),
    "app attribute missing": (["app=pyfly_hydra.demo:nope"], ["app=pyfly_hydra.demo:nope", "no attribute"]),
    "app neither asgi nor wsgi": (
        ["app=lifespan_app:not_an_app"],
        ["app=lifespan_app:not_an_app", "neither an ASGI app", "nor a WSGI app"],
    ),
    "app import raises names file and line": (["app=broken_app:app"], ["broken_app.py:3", "RuntimeError: boom"]),
    "added unknown server key": (["+server.nope=1"], ["server.nope", "unknown key"]),
    "unknown server key": (["server.nope=1"], ["server.nope", "unknown key"]),
    "added unknown server key in mode=info": (["+server.nope=1", "mode=info"], ["server.nope", "unknown key"]),
    "unknown log option": (["log=nope"], ["log=nope", "choose one of json, text"]),
    "unquoted query in bench.path": (
        ["mode=bench", "bench.path=/items?q=1"],
        ["quote the value", 'bench.path="/items?q=1"'],
    ),
    "added misspelled server key": (["+server.wrkers=2"], ["server.wrkers", "did you mean server.workers"]),
    "added unknown granian key": (["+server.granian.nope=1"], ["server.granian.nope", "unknown key"]),
    "added unknown top-level key": (["+nope=1"], ["nope", "unknown key"]),
    "bad interface": (["interface=rsgi"], ["interface=rsgi", "auto, asgi, wsgi"]),
    "bad lifespan": (["server.lifespan=maybe"], ["server.lifespan=maybe", "auto, on, off"]),
    "lifespan on with wsgi": (
        ["app=flask_app:app", "server.lifespan=on"],
        ["server.lifespan=on", "WSGI app has no lifespan"],
    ),
    "missing reload dir": (
        ["server.reload=true", "server.reload_dirs=[/nonexistent/src]"],
        ["server.reload_dirs=/nonexistent/src", "no such directory"],
    ),
    "empty reload includes": (["server.reload=true", "server.reload_includes=[]"], ["server.reload_includes"]),
    "reload dirs not a list": (["server.reload_dirs=src"], ["server.reload_dirs"]),
    "app without attribute": (["app=pyfly_hydra.demo"], ["app=pyfly_hydra.demo", "module:attribute"]),
    "factory not callable": (["app=lifespan_app:not_an_app", "app_factory=true"], ["app_factory=true", "callable"]),
    "unsupported key on hypercorn": (
        ["server=hypercorn", "server.max_concurrent_connections=10"],
        ["server.max_concurrent_connections=10", "hypercorn cannot honour it"],
    ),
    "unsupported key on granian": (
        ["server=granian", "server.max_requests_per_worker=100"],
        ["server.max_requests_per_worker=100", "granian cannot honour it"],
    ),
    "granian key on uvicorn": (
        ["server=uvicorn", "server.granian.runtime_threads=2"],
        ["server.granian.runtime_threads=2", "only granian"],
    ),
    "reload with workers": (["server.reload=true", "server.workers=2"], ["server.reload=true", "workers=1"]),
    "unknown mode": (["mode=nope"], ["mode=nope", "serve", "info", "bench"]),
    "bench over a unix socket": (["mode=bench", "server.uds=/tmp/b.sock"], ["server.uds=/tmp/b.sock", "mode=bench"]),
    "bench duration": (["mode=bench", "bench.duration=0"], ["bench.duration=0", "> 0"]),
    "bench connections": (["mode=bench", "bench.connections=0"], ["bench.connections=0", ">= 1"]),
    "bench requests": (["mode=bench", "bench.requests=0"], ["bench.requests=0", ">= 1"]),
    "bench path": (["mode=bench", "bench.path=health"], ["bench.path=health", "start with /"]),
    "bench client": (["mode=bench", "bench.client=ab"], ["bench.client=ab", "auto, wrk, h2load, builtin"]),
    "bench metric": (["mode=bench", "bench.metric=speed"], ["bench.metric=speed", "rps, p50_ms"]),
    "bench cpus": (["mode=bench", "bench.server_cpus=99"], ["bench.server_cpus=99", "usable CPUs"]),
    "bench cpus syntax": (["mode=bench", "bench.client_cpus=one"], ["bench.client_cpus=one", "like 0, 0-1"]),
    "bench duration type": (["mode=bench", "bench.duration=long"], ["bench.duration=long", "must be a number"]),
    "bad override syntax": (["server.port=[1"], ["server.port=[1"]),
    "a server target from before the adapters' packages": (
        ["server._target_=pyfly_hydra.servers.uvicorn.UvicornServer"],
        ["server._target_=pyfly_hydra.servers.uvicorn.UvicornServer", "use pyfly_hydra.servers.uvicorn.adapter."],
    ),
}


@pytest.mark.parametrize("overrides,fragments", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_clear_line(overrides: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli(*overrides), *fragments)


def test_server_not_installed(tmp_path: Path) -> None:
    result = run_cli("server=hypercorn", env=hidden_modules_env(tmp_path, "hypercorn"))
    assert_one_line_error(result, "server=hypercorn", "not installed", "pyfly-hydra[hypercorn]", "granian, uvicorn")


def test_no_server_installed(tmp_path: Path) -> None:
    result = run_cli(env=hidden_modules_env(tmp_path, "granian", "uvicorn", "hypercorn"))
    assert_one_line_error(result, "server=auto", "no ASGI server is installed")


def test_user_loop_not_installed(tmp_path: Path) -> None:
    result = run_cli("loop=uvloop", env=hidden_modules_env(tmp_path, "uvloop"))
    assert_one_line_error(result, "loop=uvloop", "not installed", "installed: asyncio")


@pytest.mark.parametrize("server", SERVERS)
def test_port_already_in_use(server: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = run_cli(f"server={server}", f"server.port={port}")
    assert_one_line_error(result, f"server.port={port}", "already in use")


def test_port_held_by_another_granian(start_server) -> None:
    """granian binds with SO_REUSEPORT: without our check a second granian would silently share the port."""
    first = start_server("server=granian")
    result = run_cli("server=granian", f"server.port={first.port}")
    assert_one_line_error(result, f"server.port={first.port}", "already in use")
    assert first.stop() == 0


FORCED_WRONG = {
    "flask as asgi": ("flask_app.py", "interface=asgi", "is WSGI (a Flask); use interface=wsgi"),
    "fastapi as wsgi": ("fastapi_app.py", "interface=wsgi", "is ASGI (a FastAPI); use interface=asgi"),
}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("source,interface,reason", FORCED_WRONG.values(), ids=FORCED_WRONG.keys())
def test_a_forced_wrong_interface_is_refused_before_serving(
    tmp_path: Path, server: str, source: str, interface: str, reason: str
) -> None:
    """As a user runs it, from the app's own directory: refused in one line, not served as 500s."""
    shutil.copy(APPS_DIR / source, tmp_path / "main.py")
    result = run_cli("app=main:app", interface, f"server={server}", cwd=tmp_path, users_defaults=True)
    assert_one_line_error(result, f"{interface}: app=main:app {reason}")
