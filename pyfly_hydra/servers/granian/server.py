"""granian's server class, with the hooks pyfly-hydra needs: an inherited socket, group signals, workers
that die with their supervisor, and a SIGHUP that rolls the workers once each new one serves.

Both replace one method of granian's own supervisor (``granian.server.common``/``mp``), so a granian
release that renames them breaks only what they add; the tests cover each.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from pyfly_hydra.servers.base import bind_address
from pyfly_hydra.servers.granian.roll import ServingReports, roll
from pyfly_hydra.servers.granian.worker import RETIRE_SIGNAL
from pyfly_hydra.supervision.crash_policy import CRASH_LOOP_SECONDS, CrashPolicy
from pyfly_hydra.supervision.lifecycle import WORKER_EVENTS
from pyfly_hydra.supervision.signals import start_blocked
from pyfly_hydra.supervision.stuck import StuckWorkers
from pyfly_hydra.system.bind import inherited_socket
from pyfly_hydra.system.forking import fork_is_safe
from pyfly_hydra.system.readiness import READINESS

logger = logging.getLogger("pyfly_hydra")

# How long a worker that exited cleanly may wait for the supervisor to take in the stop signal the
# worker got from the same group SIGTERM (a worker exiting 0 without any signal is respawned after it).
GROUP_SIGNAL_GRACE = 1.0  # seconds
SIGNAL_POLL = 0.1  # seconds
RETIRE_POLL = 0.1  # seconds between looks at a retiring worker's connections
RETIRE_HOLD_MARGIN = 0.5  # seconds past the keep-alive timeout a retiring worker may keep connections


def granian_server_class(*, fd: int | None, uds_group: int | None = None) -> type[Any]:
    """granian's server class, serving the inherited listening socket ``fd`` when it is given, and
    giving the unix socket it binds to ``uds_group`` when that is given."""
    from granian import Granian

    server_class = group_signal_aware(Granian)
    if uds_group is not None:
        server_class = with_socket_group(server_class, uds_group)
    return server_class if fd is None else on_inherited_socket(server_class, fd)


def with_socket_group(server_class: type[Any], gid: int) -> type[Any]:
    """``server_class`` that gives the unix socket file it binds to group ``gid``.

    granian sets the socket's mode itself (``uds_permissions``) but has no option for its group, so a
    proxy in another group (nginx as www-data) could not connect: the file is chowned right after
    granian builds the socket in ``_init_shared_socket``, before any worker starts.
    """

    class SocketGroupGranian(server_class):  # type: ignore[misc, valid-type]
        def _init_shared_socket(self) -> None:
            super()._init_shared_socket()
            os.chown(self.bind_uds, -1, gid)

    return SocketGroupGranian


def group_signal_aware(server_class: type[Any]) -> type[Any]:
    """``server_class`` that takes a worker stopped by the same group signal as itself for a clean stop.

    systemd (``KillMode=control-group``), ``kill -TERM -<pgid>`` and a terminal's Ctrl-C signal every
    process of the group at once. An idle granian worker handles its own copy and exits within
    milliseconds; when that happens before the supervisor has run its signal handler, granian logs
    "Unexpected exit from worker" and ends with exit code 1 after a clean stop. The handler can be
    late because Python runs it only in the main thread, and when the kernel hands the signal to one
    of granian's watcher threads, the main thread sleeps on until something else wakes it.

    Here the main thread wakes every ``SIGNAL_POLL`` seconds to run a pending handler, and a worker
    that exited with code 0 counts as stopped by its parent once the parent has the stop signal too.
    The handlers take no lock (``SignalSafeEvent.set_from_signal``): granian's own set the event the
    interrupted main thread may be inside of, and ``threading.Event``'s lock is not reentrant.
    """
    from granian.server.mp import WorkerProcess

    class GroupSignalWorker(WorkerProcess):  # type: ignore[misc, valid-type]
        on_trial = False  # a roll's new worker until it serves: its exit is the roll's failure, not a crash
        exit_reason: str | None = None  # set by whoever retires it (supervision.lifecycle); None: it decides itself

        def start(self) -> None:
            """Started with the runner's signals blocked (``start_blocked``): the worker keeps them blocked (and a
            group signal pending) until ``worker.take_signals``, instead of dying of one."""
            start_blocked(super().start, spawns=self._spawn_method != "fork")

        def _watch(self) -> None:
            """granian's watcher thread, deferred for a worker of the start until all of them are started, so each
            of them forks with no other thread here (``GroupSignalAwareGranian.startup``)."""
            if self.parent.forking:
                self.parent.unwatched.append(self)
            else:
                super()._watch()

        def terminate(self) -> None:
            """Retire a worker replaced while the server goes on (``servers.granian.worker``), then stop it."""
            parent = self.parent
            replaced = not parent.stop_signal.is_set() and not parent.reload_on_changes and not self.on_trial
            if replaced and self.inner.is_alive():
                self._retire()
            super().terminate()

        def _retire(self) -> None:
            pid, parent = self.inner.pid, self.parent
            try:
                os.kill(pid, RETIRE_SIGNAL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + parent.retire_hold
            while time.monotonic() < deadline and not parent.stop_signal.wait(RETIRE_POLL):
                if not open_connections(pid, uds=parent.bind_uds):
                    return
            logger.debug("granian worker pid %s still held connections after %.1f s", pid, parent.retire_hold)

        def _watcher(self) -> None:
            self.inner.join()
            parent = self.parent
            stuck = parent.stuck is not None and parent.stuck.found(self.inner.pid)
            if stuck:
                logger.error("granian worker-%d (pid %s) %s", self.idx + 1, self.inner.pid, parent.stuck.why)
            if self.on_trial:  # the roll says why (servers.granian.roll)
                self.interrupt_by_parent = True
            if self.inner.exitcode == 0 and parent.stop_signal.wait(GROUP_SIGNAL_GRACE):
                self.interrupt_by_parent = True
            WORKER_EVENTS.exited(self._exit_reason(stuck=stuck))
            if not self.interrupt_by_parent and parent.respawn_failed_workers and not parent.reload_on_changes:
                self._apply_crash_policy()
            super()._watcher()

        def _exit_reason(self, *, stuck: bool) -> str:
            parent = self.parent
            if self.exit_reason is not None:
                return self.exit_reason
            if stuck:
                return "stuck"
            if self.on_trial or (self.inner.exitcode != 0 and not parent.stop_signal.is_set()):
                return "crashed"
            if parent.stop_signal.is_set() or self.interrupt_by_parent:
                return "stopped"
            return "reloaded" if parent.reload_on_changes else "crashed"

        def _apply_crash_policy(self) -> None:
            """pyfly-hydra's crash policy (``pyfly_hydra.supervision.crash_policy``) instead of granian's own, which
            respawns a worker that fails at once (its crash-loop check forgets each respawn at the next one,
            so two failing workers respawn each other in a loop) or stops while another worker serves."""
            parent, slot = self.parent, self.idx
            others = sum(w.is_alive() and not parent.crashes.failing(w.idx) for w in parent.wrks if w.idx != slot)
            backoff = parent.crashes.died(slot, lived=time.monotonic() - self.birth, others_serving=others)
            died = f"granian worker-{slot + 1} (pid {self.inner.pid}) died (exit {self.inner.exitcode})"
            if backoff is None:
                parent.stopped_by_policy = f"{died}, failing since its respawn, and no worker serves"
                self.interrupt_by_parent = True
                parent.signal_handler_interrupt()
                return
            if backoff:
                soon = f"within {CRASH_LOOP_SECONDS:.0f} s of its respawn"
                logger.error("%s %s; respawning it in %.0f s", died, soon, backoff)
                if parent.stop_signal.wait(backoff):
                    self.interrupt_by_parent = True
                    return
            # granian's own crash-loop check (a death within 5.5 s of a respawn stops the server, even while
            # another worker serves) never decides: this policy does, also for a death 5 to 5.5 s after one.
            parent.respawned_wrks.pop(slot, None)

    class GroupSignalAwareGranian(server_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.stop_signal = SignalSafeEvent()
            self.main_loop_interrupt = SignalSafeEvent()
            self.crashes = CrashPolicy(self.workers)
            # A retiring worker is stopped once it holds no connection, or after this long (see servers.granian.worker).
            self.retire_hold = RETIRE_HOLD_MARGIN + self.http1_settings.header_read_timeout / 1000
            self.stopped_by_policy: str | None = None
            self.main_pid = os.getpid()
            self.serving_reports = ServingReports()
            self.stuck: StuckWorkers | None = None  # server.worker_timeout (set by the adapter)
            self.record: Path | None = None  # the run's startup record, where each roll is noted (the adapter's)
            self.roll_batch = 1  # workers a SIGHUP replaces at once (the adapter's)
            self.announced_serving = False
            self.announce_lock = threading.Lock()
            self.recycling_reason = "recycled_lifetime"  # why granian's own respawn retires a live worker
            self.fork_first = False  # the start's workers may fork from the runner (the adapter's)
            self.forking = False  # the start's workers are being started (see startup)
            self.unwatched: list[Any] = []  # the start's workers, watched once all are started

        def startup(self, spawn_target: Any, target_loader: Any) -> None:
            self.serving_reports.on_report = self._announce_once_serving
            # The start's workers fork while no other thread runs here (see _spawn_worker), so the reports'
            # reader starts after them: what they report meanwhile waits in its pipe.
            self.forking = self.fork_first
            try:
                super().startup(spawn_target, target_loader)
            finally:
                self.forking = False
                # The watchers block the signals as granian's start left them; they start threads, no process.
                start_blocked(self._watch_started, spawns=False)
            self.serving_reports.start()
            self._announce_once_serving()

        def _watch_started(self) -> None:
            """Watch the start's workers, each with granian's own watcher thread (see ``GroupSignalWorker._watch``)."""
            unwatched, self.unwatched = self.unwatched, []
            for worker in unwatched:
                worker._watch()

        def _announce_once_serving(self) -> None:
            """systemd's ``READY=1`` once every worker of the start serves (``system.notify``)."""
            with self.announce_lock:
                workers = list(self.wrks)
                if self.announced_serving or len(workers) < self.workers:
                    return
                # A thread worker (free-threaded builds) reports the runner's own pid.
                pids = [getattr(worker.inner, "pid", self.main_pid) for worker in workers]
                if self.serving_reports.all_serve(pids):
                    self.announced_serving = True
                    READINESS.serving("granian", len(workers))

        def _reload(self, spawn_target: Any, target_loader: Any) -> None:
            """SIGHUP: pyfly-hydra's roll (``servers.granian.roll``) in place of granian's respawn."""
            if not all(isinstance(worker, GroupSignalWorker) for worker in self.wrks):  # thread workers
                return super()._reload(spawn_target, target_loader)
            self.reload_signal = False
            self.respawned_wrks.clear()
            self.main_loop_interrupt.clear()
            self._env_loader(self.env_files)
            self._call_hooks(self.hooks_reload)
            roll(self, spawn_target, target_loader, batch=self.roll_batch)
            if self.interrupt_children:  # a worker died during the roll: the main loop's next turn sees it
                self.main_loop_interrupt.set()

        def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> None:
            """granian's respawn, after a crash (the old worker is gone) or to recycle a live one by lifetime or
            memory: each live one's exit is labelled ``recycling_reason`` (``supervision.lifecycle``)."""
            for old in self.wrks:
                if old.idx in workers and old.is_alive() and isinstance(old, GroupSignalWorker):
                    old.exit_reason = old.exit_reason or self.recycling_reason
            super()._respawn_workers(workers, *args, **kwargs)

        def _handle_rss_signal(self, *args: Any, **kwargs: Any) -> None:
            self.recycling_reason = "recycled_memory"
            try:
                super()._handle_rss_signal(*args, **kwargs)
            finally:
                self.recycling_reason = "recycled_lifetime"

        def shutdown(self, exit_code: int = 0) -> None:
            READINESS.draining("granian")
            super().shutdown(exit_code)

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            # granian's own handler: ``interrupt_signal = True`` and ``main_loop_interrupt.set()``, whose lock
            # the main thread holds whenever the signal lands inside its wait (a stop that never came, CI17).
            self.interrupt_signal = True
            self.stop_signal.set_from_signal()
            self.main_loop_interrupt.set_from_signal()

        def signal_handler_reload(self, *args: Any, **kwargs: Any) -> None:
            self.reload_signal = True  # granian's own, without its lock (see signal_handler_interrupt)
            self.main_loop_interrupt.set_from_signal()

        def _spawn_worker(self, *args: Any, **kwargs: Any) -> Any:
            """A worker process, forked while the start's workers are started and no other thread runs here (the
            runner holds none of the app's state: ``runner.app_check``; each worker imports the app), spawned
            otherwise: a roll, a respawn or a reload imports the app's current code in a fresh interpreter."""
            method = "fork" if self.forking and fork_is_safe() else "spawn"
            multiprocessing.set_start_method(method, force=True)  # what granian's WorkerProcess reads
            try:
                worker = super()._spawn_worker(*args, **kwargs)
            finally:
                multiprocessing.set_start_method("spawn", force=True)
            WORKER_EVENTS.started()
            if isinstance(worker, WorkerProcess):  # thread workers (free-threaded builds) get no signals
                worker.__class__ = GroupSignalWorker
            return worker

    return GroupSignalAwareGranian


def open_connections(pid: int, *, uds: Any = None) -> int:
    """How many client connections process ``pid`` holds (its listening socket not counted)."""
    import psutil

    try:
        process = psutil.Process(pid)
        tcp = sum(c.status != psutil.CONN_LISTEN for c in process.net_connections("tcp"))
        unix = sum(c.laddr == str(uds) for c in process.net_connections("unix")) - 1 if uds else 0
    except psutil.Error:
        return 0
    return tcp + max(unix, 0)


class SignalSafeEvent(threading.Event):
    """An event a signal handler sets without a lock, every wait of which wakes within ``SIGNAL_POLL``.

    A Python signal handler runs in the main thread between two bytecodes, possibly inside this very
    event's ``wait`` or ``set`` (pure Python, holding its non-reentrant lock): ``set`` there would wait
    for itself forever. ``set_from_signal`` only stores a flag, which every wait and ``is_set`` look at;
    waking every ``SIGNAL_POLL`` also lets the main thread run a handler whose signal a thread took."""

    def __init__(self) -> None:
        super().__init__()
        self._signalled = False

    def set_from_signal(self) -> None:
        self._signalled = True

    def is_set(self) -> bool:
        return self._signalled or super().is_set()

    def clear(self) -> None:
        self._signalled = False
        super().clear()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._signalled:
            remaining = SIGNAL_POLL if deadline is None else min(SIGNAL_POLL, deadline - time.monotonic())
            if remaining <= 0:
                return self.is_set()
            if super().wait(remaining):
                return True
        return True


def on_inherited_socket(server_class: type[Any], fd: int) -> type[Any]:
    """``server_class`` serving the inherited listening socket ``fd`` instead of building one.

    granian (since 2.5) builds a ``SocketHolder`` from its address or unix socket path in
    ``_init_shared_socket`` and hands it to every worker; the holder also takes a listening fd, so
    replacing that one hook is all it needs. The socket object is what granian's process workers
    receive, and granian closes it at shutdown.
    """
    from granian._granian import SocketHolder

    class InheritedSocketGranian(server_class):  # type: ignore[misc, valid-type]
        @property
        def _bind_addr_fmt(self) -> str:  # granian's "Listening at" line: the socket's own address
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.family == socket.AF_UNIX:
                    return f"unix:{sock.getsockname()}"
                host, port = sock.getsockname()[:2]
                return bind_address(host, port)

        def _init_shared_socket(self) -> None:
            sock = inherited_socket(fd)
            self._ssp = None
            self._shd = SocketHolder(fd, sock.family == socket.AF_UNIX, self.backlog)
            self._sfd = fd
            self._sso = sock

    return InheritedSocketGranian
