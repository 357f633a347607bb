"""Shared fixtures: real servers started through `python -m pyfly_hydra` on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import trustme

from pyfly_hydra.bench.process import free_port
from pyfly_hydra.config.environment import CONVENTIONS, PREFIX
from pyfly_hydra.registry import SERVER_NAMES

ROOT = Path(__file__).resolve().parent.parent
APPS_DIR = Path(__file__).resolve().parent / "apps"
SERVERS = SERVER_NAMES  # every built-in server (pyfly_hydra.registry)
STARTUP_TIMEOUT = 30.0
OTHER_USER = "pyfly-other"  # a second, real Unix user for tests of what another user can do to a run


def in_ci() -> bool:
    """Whether this is a CI run (``CI=true``, as GitHub Actions and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """A tool, package or privilege the test needs is not here: a skip on a workstation, a failure under
    ``CI=true``, so that CI never goes green on tests it did not run. Every such skip goes through here."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}: CI must run this test, not skip it", pytrace=False)
    pytest.skip(reason)


def needs(absent: bool, reason: str) -> pytest.MarkDecorator:
    """``skipif`` for a missing tool, through ``missing`` (see ``pytest_runtest_setup``): ``absent`` is
    whether what the test needs is missing here."""
    return pytest.mark.needs(reason) if absent else pytest.mark.needs()


needs_wrk = needs(shutil.which("wrk") is None, "wrk is not installed (.ci/run installs it)")
needs_h2load = needs(shutil.which("h2load") is None, "h2load is not installed (nghttp2-client; .ci/run installs it)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(reason): a tool the test needs is missing (see tests/conftest.py)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked by ``needs`` with a reason lacks what it needs: skipped, or failed under CI."""
    for mark in item.iter_markers("needs"):
        if mark.args:
            missing(mark.args[0])


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    users_defaults: bool = False,
    launcher: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `python -m pyfly_hydra ARGS` to completion, its Hydra output dir in a temporary directory
    (``users_defaults=True``: where a user's run would put it), started through ``launcher`` if given."""
    with tempfile.TemporaryDirectory(prefix="pyfly-hydra-test-") as run_dir:
        chosen = users_defaults or any(a.startswith("hydra.run.dir=") for a in args)
        default_dir = [] if chosen else [f"hydra.run.dir={run_dir}"]
        return subprocess.run(
            [*launcher, sys.executable, "-m", "pyfly_hydra", *args, *default_dir],
            cwd=cwd or ROOT,
            env=env or child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str, code: int = 2) -> str:
    """The run failed with ``code`` and printed exactly one ``pyfly-hydra: error:`` line holding ``fragments``."""
    output = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == code, output
    assert "Traceback" not in result.stdout + result.stderr
    assert len(output) == 1, output
    assert output[0].startswith("pyfly-hydra: error: "), output
    for fragment in fragments:
        assert fragment in output[0], output
    return output[0]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child run: ours, less every variable that would configure it (PYFLY_HYDRA_*,
    WEB_CONCURRENCY, PORT), with the test apps importable; then ``extra``."""
    env = {name: value for name, value in os.environ.items() if not configures(name)}
    env.pop("HYDRA_FULL_ERROR", None)
    paths = [str(APPS_DIR), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


def configures(name: str) -> bool:
    """Whether the variable ``name`` configures a run (or is pyfly-hydra's own): never inherited by a test's run."""
    return name.startswith(PREFIX) or name in CONVENTIONS


def hidden_modules_env(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment where `modules` cannot be imported nor found (a real sitecustomize, no mocks)."""
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    lines = ["import sys"] + [f"sys.modules[{m!r}] = None" for m in modules]
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return env


@dataclass
class RunningServer:
    """A `python -m pyfly_hydra` process serving on 127.0.0.1:port."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path
    run_dir: Path
    scheme: str = "http"
    verify: ssl.SSLContext | bool = False
    http2_only: bool = False
    exit_code: int | None = field(default=None)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client that speaks what this server speaks (HTTP/2 prior knowledge when h2-only)."""
        if self.http2_only:
            return httpx.Client(http1=self.scheme == "https", http2=True, verify=self.verify, **kwargs)
        return httpx.Client(verify=self.verify, **kwargs)

    def wait_ready(self, path: str = "/health") -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode} before answering:\n{self.log()}")
            try:
                with self.client(timeout=1) as client:
                    response = client.get(self.url + path)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill_group()
        pytest.fail(f"server did not answer within {STARTUP_TIMEOUT}s:\n{self.log()}")

    def kill_group(self) -> None:
        """Stop the runner and every worker it started: SIGTERM to the group, then SIGKILL what remains."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not self._group_alive():
                return
            os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + grace
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _group_alive(self) -> bool:
        self.process.poll()  # reap the runner, so it does not linger as a zombie member of the group
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait_exit(timeout=timeout, after=f"signal {sig}")

    def wait_exit(self, *, timeout: float, after: str = "its signal") -> int:
        """The exit code once the runner exits (it was signalled already: never signalled twice, a
        second SIGTERM would land in Python's finalisation and end it with -15)."""
        try:
            self.exit_code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            where = process_states(self.process.pid)
            self.process.kill()
            self.exit_code = self.process.wait()
            pytest.fail(f"server did not exit within {timeout}s after {after}:\n{self.log()}\n{where}")
        return self.exit_code


def process_states(pid: int) -> str:
    """Where a process tree that will not stop is: each thread's state, what it waits in, and the signals
    pending or blocked (from /proc), to tell a lost signal from a stuck drain."""
    import psutil

    lines = []
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return "(the process tree is gone)"
    for process in processes:
        for task in sorted(Path(f"/proc/{process.pid}/task").glob("*")):
            try:
                entries = (line.split(":\t", 1) for line in (task / "status").read_text().splitlines())
                status = {entry[0]: entry[1].strip() for entry in entries if len(entry) == 2}
                wchan = (task / "wchan").read_text()
            except OSError:
                continue
            signals = {key: status.get(key) for key in ("SigPnd", "ShdPnd", "SigBlk")}
            name, state = status.get("Name"), status.get("State")
            lines.append(f"  pid {process.pid} tid {task.name} {name}: {state} wchan={wchan} {signals}")
        lines.append(_python_stacks(process.pid))
    return "process states:\n" + "\n".join(lines)


def _python_stacks(pid: int) -> str:
    """Every thread's Python stack in ``pid`` (py-spy, from the dev extra): where it waits, and for what."""
    spy = Path(sys.executable).parent / "py-spy"
    try:
        result = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"  (no Python stacks of pid {pid}: {error})"
    return textwrap.indent(result.stdout or result.stderr, "    ")


def launch_server(
    *overrides: str,
    directory: Path,
    ready_path: str | None = "/health",
    scheme: str = "http",
    verify: ssl.SSLContext | bool = False,
    http2_only: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    users_defaults: bool = False,
    launcher: tuple[str, ...] = (),
    port: int | None = None,
    pass_fds: tuple[int, ...] = (),
) -> RunningServer:
    """Start `python -m pyfly_hydra OVERRIDES` on a free port, its log and run record in ``directory``,
    and wait until it answers ``ready_path`` (None: return at once). ``users_defaults=True``: no
    ``hydra.run.dir``, so the record goes where a user's would (``cwd``)."""
    port = port or free_port()
    run_dir = directory / "run"
    run_dir_override = [] if users_defaults else [f"hydra.run.dir={run_dir}"]
    log_path = directory / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*launcher, sys.executable, "-m", "pyfly_hydra", *overrides, f"server.port={port}", *run_dir_override],
            cwd=cwd or ROOT,
            env=env or child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so teardown can reach every worker
            pass_fds=pass_fds,
        )
    server = RunningServer(process, port, log_path, run_dir, scheme=scheme, verify=verify, http2_only=http2_only)
    try:
        if ready_path is not None:
            server.wait_ready(ready_path)
    except BaseException:
        server.kill_group()
        raise
    return server


@pytest.fixture(scope="session")
def other_user() -> pwd.struct_passwd:
    """``OTHER_USER``, created once (useradd, with its own group) when missing; skipped unless root."""
    if os.geteuid() != 0:
        missing("needs root: a second user is created (useradd) and given files (chown)")
    if shutil.which("useradd") is None:
        missing("no useradd(8) to create a second user")
    deadline = time.monotonic() + 30
    while True:
        try:
            return pwd.getpwnam(OTHER_USER)
        except KeyError:
            pass
        # Another test process may be adding it at the same moment (useradd then fails on its lock): retry.
        command = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        added = subprocess.run([*command, OTHER_USER], capture_output=True, text=True)
        if added.returncode != 0 and time.monotonic() > deadline:
            pytest.fail(f"useradd {OTHER_USER} failed: {added.stderr.strip()}")
        if added.returncode != 0:
            time.sleep(0.2)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Factory: start_server(*overrides, **launch_server options) -> RunningServer, stopped at teardown."""
    started: list[RunningServer] = []

    def start(*overrides: str, **options: Any) -> RunningServer:
        directory = tmp_path / f"server-{len(started)}"
        directory.mkdir()
        server = launch_server(*overrides, directory=directory, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill_group()


# granian will not recycle a worker before it has lived 60 s. So that the recycling test need not
# wait out that minute, its granian drill starts with the session (2 workers, light load) and runs
# alongside the other tests; the test finds it done. Only when that test is selected.
GRANIAN_LIFETIME_TEST = "test_recycling.py::test_workers_are_replaced_by_lifetime_and_memory_without_failed_requests"


@pytest.fixture(scope="session", autouse=True)
def granian_lifetime_drill(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A granian server recycling its workers every 60 s under light load (a ``LoadWatch``), or None."""
    from tests.load_watch import GRANIAN_LIFETIME, LoadWatch

    if not any(item.nodeid.endswith(GRANIAN_LIFETIME_TEST) for item in request.session.items):
        yield None
        return
    directory = tmp_path_factory.mktemp("granian-lifetime")
    overrides = ("server=granian", "server.workers=2", f"server.worker_max_lifetime={GRANIAN_LIFETIME}")
    watch = LoadWatch("granian-lifetime", launch_server(*overrides, directory=directory, ready_path="/loop"))
    watch.start()
    yield watch
    watch.stop()
    watch.server.kill_group()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    """A test CA's certificate for 127.0.0.1/localhost: (certfile, keyfile mode 600, client context); the CA's own
    certificate is ``ca.pem`` beside them (an HTTP/3 client trusts it: tests/h3_client.py)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(certfile), append=True)
    keyfile.chmod(0o600)
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return certfile, keyfile, context


def tls_overrides(tls: tuple[Path, Path, ssl.SSLContext]) -> list[str]:
    return [f"server.ssl_certfile={tls[0]}", f"server.ssl_keyfile={tls[1]}"]
