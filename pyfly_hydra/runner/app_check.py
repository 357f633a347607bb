"""The user's app checked in a short-lived fork of the runner, so the runner never imports it.

The runner must know, before anything serves, that the app imports and what it is (ASGI or WSGI), and say so in
one line when it is not. It used to import the app itself, so its workers could not fork from it: a fork would
share what the app's import made (a database connection opened at import, used by every worker at once: what
gunicorn's ``--preload`` warns of) and keep that code through a rolling restart. Each worker was then a second
interpreter importing the server again, most of the runner's start-up above Hydra's own. Checked in a fork, the
runner keeps none of the app's state, and its first workers fork from it (``supervision.supervisor``,
``servers.granian``), each importing the app afresh as a spawned one does.

The fork is started as soon as the app is known and imports it while the runner builds the rest of its plan (the
server's adapter, its checks), on another CPU where there is one. Where a fork is not safe (not Linux, or a thread
already runs in the runner), the app is imported here, when its outcome is asked for, and the workers are spawned.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyfly_hydra.errors import USER_FULL_ERROR_ENV, ConfigError, ServeError
from pyfly_hydra.system.forking import fork_is_safe
from pyfly_hydra.worker.apps import AppTarget, load_app_target, put_first_on_path
from pyfly_hydra.worker.log_format import kept_logging


@contextmanager
def app_check(import_string: str, *, app_dir: str, factory: bool, interface: str) -> Iterator[AppCheck]:
    """Start checking the app, in a fork where that is safe, so it imports while the runner goes on with its plan;
    ``AppCheck.outcome`` waits for it. The fork is reaped however the block ends (a config error found meanwhile
    ends it)."""
    if not fork_is_safe():
        yield AppCheck(import_string, app_dir=app_dir, factory=factory, interface=interface, pid=None, answer=None)
        return
    put_first_on_path(app_dir)  # in the runner too: the workers inherit its sys.path
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the check: import, report, and go without running the runner's exit handlers
        os.close(readable)
        _report(writable, import_string, app_dir=app_dir, factory=factory, interface=interface)
    os.close(writable)
    check = AppCheck(import_string, app_dir=app_dir, factory=factory, interface=interface, pid=pid, answer=readable)
    try:
        yield check
    finally:
        check.close()


class AppCheck:
    """One check of the app: in the fork ``pid`` answering on the pipe ``answer``, or (``pid`` None) here."""

    def __init__(
        self, import_string: str, *, app_dir: str, factory: bool, interface: str, pid: int | None, answer: int | None
    ) -> None:
        self.import_string = import_string
        self.app_dir, self.factory, self.interface = app_dir, factory, interface
        self.pid = pid
        self.answer = answer

    def outcome(self) -> tuple[AppTarget, bool]:
        """The app's target (``worker.apps.load_app_target``), and whether it was checked in a fork (the runner
        holds none of its state); a ConfigError, as the import raised it, when it cannot be served."""
        if self.pid is None:
            with kept_logging():  # the app's import may configure logging for the whole process
                return self._load(), False
        assert self.answer is not None
        with os.fdopen(self.answer, "rb") as answer:
            self.answer = None
            reported = answer.read()
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        if not reported:
            ended = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            how = f"signal {ended}" if ended is not None else f"exit {os.waitstatus_to_exitcode(status)}"
            raise ServeError(f"importing the app {self.import_string} ended the process that checked it ({how})")
        outcome: tuple[str, Any, str] = pickle.loads(reported)
        kind, value, details = outcome
        if kind == "error":
            if os.environ.get(USER_FULL_ERROR_ENV) == "1":  # HYDRA_FULL_ERROR=1: the check's traceback too
                print(details, file=sys.stderr, end="")
            raise ConfigError(*value)
        return value, True

    def _load(self) -> AppTarget:
        return load_app_target(self.import_string, app_dir=self.app_dir, factory=self.factory, interface=self.interface)

    def close(self) -> None:
        """End a check whose outcome was never taken: its fork killed and reaped, its pipe closed."""
        if self.answer is not None:
            os.close(self.answer)
            self.answer = None
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None


def _report(writable: int, import_string: str, *, app_dir: str, factory: bool, interface: str) -> None:
    """In the fork: check the app and write the outcome (the target, or the error and its traceback) to the pipe."""
    code = 0
    try:
        outcome: tuple[str, Any, str] = (
            "target", load_app_target(import_string, app_dir=app_dir, factory=factory, interface=interface), ""
        )  # fmt: skip
    except ConfigError as error:  # its key, value and words (an exception's frames do not pickle; its text does)
        value = error.value if isinstance(error.value, str | int | float | bool | None) else str(error.value)
        outcome = ("error", (error.key, value, error.allowed), traceback.format_exc())
    except BaseException as error:  # anything else the app's import raised, SystemExit included
        message = f"importing it raised {type(error).__name__}: {error}"
        outcome = ("error", ("app", import_string, message), traceback.format_exc())
    try:
        with os.fdopen(writable, "wb") as out:
            out.write(pickle.dumps(outcome))
    except BaseException:  # an outcome that does not pickle: the runner says the check failed
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
