"""A stop signal is taken whatever the main thread is doing when it lands, on every server.

Python runs a signal handler in the main thread between two bytecodes, so it may run inside the very
``Event.wait()``/``set()`` (pure Python, holding the event's non-reentrant lock) whose event it sets: a
handler that calls ``set()`` there waits for itself forever. granian's runner did (CI14, CI17: "did not
exit within 40 s of SIGTERM", its main thread in a futex, no signal pending), and pyfly-hydra's supervisor
could, inside a worker's ``shutdown.set()``. Each test lands the signal exactly there, in a child process
(a deadlock must not hang the test run), and expects the stop to be seen within seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pyfly_hydra.supervision.signals import IGNORED_SIGNALS, LOG_REOPEN_SIGNAL, ROLL_SIGNAL, STOP_SIGNALS
from pyfly_hydra.worker.control import SUPERVISOR_SIGNALS
from tests.conftest import ROOT, child_env

GRANIAN = """
    import os, signal, sys
    from granian.http import HTTP1Settings
    from pyfly_hydra.servers.granian.server import granian_server_class

    server = granian_server_class(fd=None)(target="pyfly_hydra.demo:app", http1_settings=HTTP1Settings())
    signal.signal(signal.SIGTERM, server.signal_handler_interrupt)
    event = getattr(server, sys.argv[1])
    with event._cond:  # the main thread inside this event's wait or set, as granian's main loop often is
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10_000))  # bytecodes: the handler runs here, with the lock held
    assert server.interrupt_signal and server.main_loop_interrupt.wait(5) and server.stop_signal.wait(5)
    print("stopped")
"""

SUPERVISOR = """
    import multiprocessing, os, signal, time
    from pyfly_hydra.supervision.supervisor import Slot, Supervisor, Worker
    from pyfly_hydra.worker.control import WorkerControl

    context = multiprocessing.get_context("spawn")
    supervisor = Supervisor(print, server="uvicorn", listeners=[], workers=1, graceful_timeout=1.0)
    control = WorkerControl(context.Event(), context.Event(), context.Event(), supervisor_pid=os.getpid())
    process = context.Process(target=time.sleep, args=(30,))  # a worker that neither serves nor exits
    process.start()
    supervisor.slots = [Slot(Worker(process, control))]
    signal.signal(signal.SIGTERM, supervisor._on_stop_signal)
    with control.shutdown._cond:  # the main thread inside this worker's shutdown.set(), as _stop and _recycle are
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10_000))
    started = time.monotonic()
    supervisor._wait()  # woken by the handler at once, not after its poll
    assert supervisor.stopping and time.monotonic() - started < 0.1, time.monotonic() - started
    process.kill()
    print("stopped")
"""


SPAWNING = """
    import multiprocessing, os, signal
    from multiprocessing.process import BaseProcess
    from pyfly_hydra.supervision.supervisor import Supervisor

    supervisor = Supervisor(id, server="uvicorn", listeners=[], workers=1, graceful_timeout=1.0)
    signal.signal(signal.SIGTERM, supervisor._on_stop_signal)
    start = BaseProcess.start

    def start_during_a_stop(process):  # the stop signal lands while the supervisor starts a worker
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10_000))
        start(process)

    BaseProcess.start = start_during_a_stop
    worker = supervisor._spawn()
    sum(range(10_000))
    worker.process.join(10)
    print("stopped" if supervisor.stopping else "lost")
"""


def _child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_granians_stop_signal_is_taken_inside_its_main_loops_wait() -> None:
    for event in ("main_loop_interrupt", "stop_signal"):
        try:
            result = _child(GRANIAN, event)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the handler deadlocked inside {event}'s lock") from None
        assert result.stdout.strip() == "stopped", result.stderr


def test_the_supervisors_stop_signal_is_taken_inside_a_workers_shutdown_set() -> None:
    try:
        result = _child(SUPERVISOR)
    except subprocess.TimeoutExpired:
        raise AssertionError("the handler deadlocked inside a worker's shutdown lock") from None
    assert result.stdout.strip() == "stopped", result.stderr


def test_a_stop_signal_while_the_supervisor_starts_a_worker_is_not_lost() -> None:
    """It was set to SIG_IGN around the start (so the worker inherited it ignored): CI20's runner, stopped
    while it replaced a recycled worker, served on. Now blocked around the start, and delivered after."""
    assert _child(SPAWNING).stdout.strip() == "stopped"


def test_the_workers_leave_exactly_the_runners_signals_to_their_supervisor() -> None:
    assert set(SUPERVISOR_SIGNALS) == {*STOP_SIGNALS, *IGNORED_SIGNALS, ROLL_SIGNAL, LOG_REOPEN_SIGNAL}


FIRST_SPAWN = """
    import multiprocessing
    from pyfly_hydra.supervision.signals import start_blocked
    from report_mask import report

    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=report, args=(sending,))
    start_blocked(child.start, spawns=True)  # the first spawn of this interpreter: the resource tracker starts with it
    print(receiving.recv())
    child.join()
"""

FIRST_FORK = """
    import json, multiprocessing
    import psutil
    from pyfly_hydra.supervision.signals import start_blocked
    from report_mask import report

    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    events = context.Event(), context.Event()  # a worker's control: semaphores, which a spawn would register
    child = context.Process(target=report, args=(sending,))
    start_blocked(child.start, spawns=False)
    mask = receiving.recv()
    others = [process.pid for process in psutil.Process().children() if process.pid != child.pid]
    child.join()
    print(json.dumps({"mask": mask, "others": others}))
"""


def test_the_first_spawned_worker_starts_with_the_supervisors_signals_blocked() -> None:
    """multiprocessing's resource tracker unblocks SIGINT and SIGTERM once it starts, and the first spawn
    starts it: that worker started with them unblocked and died of a group SIGTERM while it loaded (CI31)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FIRST_SPAWN)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert result.returncode == 0, result.stderr
    assert set(SUPERVISOR_SIGNALS) <= set(json.loads(result.stdout)), result.stdout


def test_a_forked_worker_starts_blocked_and_no_resource_tracker_with_it() -> None:
    """The start's workers fork: they need no resource tracker, a fresh interpreter that took a CPU from them."""
    result = _child(FIRST_FORK)
    assert result.returncode == 0, result.stderr
    started = json.loads(result.stdout)
    assert set(SUPERVISOR_SIGNALS) <= set(started["mask"]), started
    assert started["others"] == [], started
