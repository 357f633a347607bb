"""The server under test as a child process: start, wait until it answers, sample its CPU and memory, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from pyfly_hydra.errors import ConfigError, PyflyHydraError

SAMPLE_SECONDS = 0.2
MIB = 1024 * 1024


class ServerProcessError(PyflyHydraError):
    """The server under test did not start, or died during the benchmark."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def parse_cpus(key: str, value: str | None) -> frozenset[int] | None:
    """``"0"``, ``"0-1"``, ``"0,2"`` as a set of CPU numbers this process may use; None when unset."""
    if value is None or str(value).strip() == "":
        return None
    cpus: set[int] = set()
    try:
        for part in str(value).split(","):
            first, _, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ConfigError(key, value, "must list CPU numbers like 0, 0-1 or 0,2") from None
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus <= usable:
        raise ConfigError(key, value, f"must be among the usable CPUs {sorted(usable)}")
    return frozenset(cpus)


def worker_pids(root_pid: int) -> list[int]:
    """The processes under ``root_pid`` that can serve: every live descendant but multiprocessing's resource
    tracker (one that exits, or has exited unreaped, while it is looked at is not one)."""
    pids = []
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:  # gone, or a zombie
            continue
    return pids


@contextmanager
def pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the calling thread (and the processes it starts) on ``cpus``, then restore its affinity."""
    if cpus is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


@dataclass(frozen=True)
class Usage:
    """The server tree's CPU use (percent of one core, so 2 busy workers read 200) and peak memory."""

    cpu_percent: float
    peak_rss_mib: float
    cpus: tuple[int, ...]  # the CPUs the server's processes were allowed to run on, as observed


class UsageSampler:
    """Samples a process and its descendants in a background thread while load runs."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="usage-sampler", daemon=True)
        self._cpu: dict[int, float] = {}
        self._peak_rss = 0
        self._cpus: set[int] = set()
        self._started = 0.0
        self._cpu_at_start = 0.0
        self.wall = 0.0  # seconds sampled, set when the window closes

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _poll(self) -> None:
        rss = 0
        for process in self._tree():
            try:
                times = process.cpu_times()
                self._cpu[process.pid] = times.user + times.system
                rss += _proportional_memory(process)
                self._cpus.update(process.cpu_affinity())
            except psutil.NoSuchProcess:
                continue
        self._peak_rss = max(self._peak_rss, rss)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._poll()

    def __enter__(self) -> UsageSampler:
        self._poll()
        self._cpu_at_start = sum(self._cpu.values())
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()
        self.wall = time.perf_counter() - self._started

    def usage(self) -> Usage:
        """CPU and peak RSS over the sampled window."""
        cpu = sum(self._cpu.values()) - self._cpu_at_start
        return Usage(
            cpu_percent=100 * cpu / self.wall if self.wall > 0 else 0.0,
            peak_rss_mib=self._peak_rss / MIB,
            cpus=tuple(sorted(self._cpus)),
        )


class ServerProcess:
    """A server child in its own process group, its output in ``log_path``: start, wait for it, stop it."""

    def __init__(
        self,
        command: list[str],
        *,
        log_path: Path,
        cpus: frozenset[int] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: the child's environment (None: ours)."""
        self.log_path = log_path
        with log_path.open("w") as log, pinned(cpus):
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )

    @property
    def pid(self) -> int:
        """The runner's pid (the root of the server's process tree)."""
        return self.process.pid

    def last_log_line(self) -> str:
        """The last line the server wrote, for failure reasons."""
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no output)"

    def wait_ready(self, probe: Callable[[], bool], *, timeout: float, poll_seconds: float = 0.1) -> float:
        """Poll ``probe`` until it succeeds and return the seconds since the start; fail if the server exits
        or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerProcessError(
                    f"the server exited with {self.process.returncode} before answering: {self.last_log_line()}"
                )
            if probe():
                return time.perf_counter() - self.started
            time.sleep(poll_seconds)
        raise ServerProcessError(f"the server did not answer within {timeout:g} s: {self.last_log_line()}")

    def ensure_alive(self) -> None:
        """Fail when the server died while under load."""
        if self.process.poll() is not None:
            raise ServerProcessError(f"the server died under load (exit {self.process.returncode})")

    def stop(self, *, timeout: float) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then kill the whole group; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise ServerProcessError(f"the server did not stop within {timeout:g} s of SIGTERM") from None


def _proportional_memory(process: psutil.Process) -> int:
    """The process's share of physical memory: its own pages, and each page it shares (with the runner it forked
    from, with the other workers) divided among the processes sharing it (PSS), so a sum over a server's processes
    counts every page once; its resident set (RSS) where the kernel does not say (not Linux)."""
    try:
        return int(process.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):
        return int(process.memory_info().rss)
