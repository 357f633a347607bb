"""The user's app checked in a short-lived fork of the runner, so the runner never imports it.

The runner must know, before anything serves, that the app imports and what it is (ASGI or WSGI), and say so in
one line when it is not. It used to import the app itself, so its workers could not fork from it: a fork would
share what the app's import made (a database connection opened at import, used by every worker at once: what
gunicorn's ``--preload`` warns of) and keep that code through a rolling restart. Each worker was then a second
interpreter importing the server again, most of the runner's start-up above Hydra's own. Checked in a fork, the
runner keeps none of the app's state, and its first workers fork from it (``supervision.supervisor``,
``servers.granian``), each importing the app afresh as a spawned one does.

Where a fork is not safe (not Linux, or a thread already runs in the runner), the app is imported here, as before,
and the workers are spawned.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from typing import Any

from pyfly_hydra.errors import USER_FULL_ERROR_ENV, ConfigError, ServeError
from pyfly_hydra.system.forking import fork_is_safe
from pyfly_hydra.worker.apps import AppTarget, load_app_target, put_first_on_path
from pyfly_hydra.worker.log_format import kept_logging


def checked_app(import_string: str, *, app_dir: str, factory: bool, interface: str) -> tuple[AppTarget, bool]:
    """The app's target (``worker.apps.load_app_target``), and whether it was checked in a fork (the runner holds
    none of its state); a ConfigError, as the import raised it, when it cannot be served."""
    if not fork_is_safe():
        with kept_logging():  # the app's import may configure logging for the whole process
            return load_app_target(import_string, app_dir=app_dir, factory=factory, interface=interface), False
    put_first_on_path(app_dir)  # in the runner too: the workers inherit its sys.path
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the check: import, report, and go without running the runner's exit handlers
        os.close(readable)
        _report(writable, import_string, app_dir=app_dir, factory=factory, interface=interface)
    os.close(writable)
    with os.fdopen(readable, "rb") as answer:
        reported = answer.read()
    _, status = os.waitpid(pid, 0)
    if not reported:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}"
        raise ServeError(f"importing the app {import_string} ended the process that checked it ({how})")
    outcome: tuple[str, Any, str] = pickle.loads(reported)
    kind, value, details = outcome
    if kind == "error":
        if os.environ.get(USER_FULL_ERROR_ENV) == "1":  # HYDRA_FULL_ERROR=1: the check's traceback too
            print(details, file=sys.stderr, end="")
        raise ConfigError(*value)
    return value, True


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
