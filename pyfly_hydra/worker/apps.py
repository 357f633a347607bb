"""Where the app comes from: an import string checked in the parent before any server starts.

The parent imports the app once to fail fast with one clear line (naming the file and line of the
user's code when the import raises) and to tell a WSGI callable from an ASGI one; each worker then
imports it again itself.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyfly_hydra.errors import ConfigError

EXAMPLE = "pyfly_hydra.demo:app"
INTERFACES = ("auto", "asgi", "wsgi")
ASGI_SHAPE = "async def app(scope, receive, send)"
WSGI_SHAPE = "def app(environ, start_response)"


@dataclass(frozen=True)
class AppTarget:
    """An app as servers load it: ``module:attribute``, optionally a factory to call, its interface, and the
    directory it imports from (first on ``sys.path``)."""

    import_string: str
    factory: bool = False
    interface: str = "asgi"  # asgi | wsgi
    directory: Path | None = None  # app_dir, absolute; None: wherever sys.path already finds it


def put_first_on_path(app_dir: str) -> Path:
    """``app_dir`` (relative to the current directory) first on ``sys.path``, as ``uvicorn --app-dir`` does.

    Workers inherit it: spawned ones get the runner's ``sys.path``, forked ones its memory, and granian is
    given it as its ``working_dir``."""
    directory = Path(app_dir).absolute()
    if not directory.is_dir():
        raise ConfigError("app_dir", app_dir, f"no such directory ({directory})")
    if sys.path[:1] != [str(directory)]:
        sys.path.insert(0, str(directory))
    return directory


def is_asgi_callable(obj: Any) -> bool:
    """True for ``async def app(scope, receive, send)`` and objects whose ``__call__`` is async."""
    if inspect.isclass(obj):
        return False
    return inspect.iscoroutinefunction(obj) or (callable(obj) and inspect.iscoroutinefunction(obj.__call__))


def _positional_arity(obj: Any) -> int | None:
    """How many positional arguments ``obj(...)`` takes, or None when it cannot be told."""
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in parameters)


def detect_interface(obj: Any) -> str | None:
    """``asgi`` or ``wsgi`` for what ``obj`` looks like, or None when it is neither."""
    if is_asgi_callable(obj):
        return "asgi"
    if callable(obj) and not inspect.isclass(obj) and _positional_arity(obj) == 2:
        return "wsgi"
    return None


def _library_roots() -> tuple[str, ...]:
    import sysconfig  # the error path only: keep it off every start-up

    paths = sysconfig.get_paths()
    return tuple({os.path.realpath(paths[name]) for name in ("stdlib", "platstdlib", "purelib", "platlib")})


def _display_path(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


def error_location(error: BaseException) -> str | None:
    """``file:line`` of the user's code that raised ``error`` (the innermost frame outside libraries)."""
    import traceback  # the error path only: keep it off every start-up

    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        return f"{_display_path(error.filename)}:{error.lineno}"
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith("<")]
    if not frames:
        return None
    roots = _library_roots()
    own = [frame for frame in frames if not os.path.realpath(frame.filename).startswith(roots)]
    frame = (own or frames)[-1]
    return f"{_display_path(frame.filename)}:{frame.lineno}"


TRACEBACK_HINT = " (HYDRA_FULL_ERROR=1 shows the traceback)"


def _failed(import_string: str, what: str, error: BaseException) -> ConfigError:
    location = error_location(error)
    where = f" at {location}" if location else ""
    summary = f"{type(error).__name__}: {error.msg if isinstance(error, SyntaxError) else error}"
    return ConfigError("app", import_string, f"{what} failed{where}: {summary}{TRACEBACK_HINT}")


def user_traceback(error: BaseException) -> str:
    """``error``'s traceback through the user's code only (importlib's and pyfly-hydra's frames left out):
    what a worker shows when the app it imports fails, once, under the one error line."""
    ours = (str(Path(__file__).parent), str(Path(importlib.__file__).parent), "<frozen ")
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith(ours)]
    head = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
    return "".join([*head, *traceback.format_exception_only(error)]).rstrip("\n")


def _holder(module_name: str, app_dir: Path) -> Path | None:
    """The directory ``module_name`` would import from: ``app_dir``'s ``src/`` or a parent, nearest first."""
    parts = module_name.split(".")
    for directory in (app_dir / "src", *app_dir.parents):
        module = directory.joinpath(*parts)
        if module.with_suffix(".py").is_file() or (module / "__init__.py").is_file():
            return directory
    return None


def _not_found(import_string: str, module_name: str, app_dir: Path | None) -> ConfigError:
    if app_dir is None:
        return ConfigError("app", import_string, f"no module named '{module_name}' (searched sys.path)")
    searched = f"no module named '{module_name}' in app_dir {app_dir} or on sys.path"
    holder = _holder(module_name, app_dir)
    if holder is None:
        return ConfigError("app", import_string, f"{searched}; set app_dir to the directory that holds it")
    return ConfigError("app", import_string, f"{searched}; {holder} holds it: add app_dir={os.path.relpath(holder)}")


def _import_module(import_string: str, module_name: str, app_dir: Path | None) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise _not_found(import_string, module_name, app_dir) from None
        raise _failed(import_string, f"importing '{module_name}'", exc) from exc
    except Exception as exc:
        raise _failed(import_string, f"importing '{module_name}'", exc) from exc


def import_object(import_string: str, *, app_dir: Path | None = None) -> Any:
    """The object ``module:attribute`` names (dotted attributes allowed); ConfigError naming ``app`` if none
    (and, given the ``app_dir`` searched, where the module is when it lies elsewhere)."""
    module_name, sep, attribute = import_string.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError("app", import_string, f"expected an import string 'module:attribute', e.g. {EXAMPLE}")
    obj = _import_module(import_string, module_name, app_dir)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError("app", import_string, f"module '{module_name}' has no attribute '{attribute}'") from None
    return obj


def _neither(import_string: str, obj: Any, *, built: bool) -> ConfigError:
    what = f"the factory returned a {type(obj).__name__}" if built else f"a {type(obj).__name__}"
    hint = ""
    if not built and callable(obj) and not inspect.isclass(obj) and _positional_arity(obj) == 0:
        hint = "; if it builds the app, set app_factory=true"
    return ConfigError(
        "app", import_string, f"{what} is neither an ASGI app ({ASGI_SHAPE}) nor a WSGI app ({WSGI_SHAPE}){hint}"
    )


def _build(import_string: str, factory: Any) -> Any:
    try:
        return factory()
    except Exception as exc:
        raise _failed(import_string, "calling the app factory", exc) from exc


def _check_forced(import_string: str, obj: Any, interface: str) -> None:
    """Refuse ``interface=asgi|wsgi`` that contradicts what the app plainly is: served, every request would fail."""
    detected = detect_interface(obj)
    if detected is not None and detected != interface:
        raise ConfigError(
            "interface",
            interface,
            f"app={import_string} is {detected.upper()} (a {type(obj).__name__});"
            f" use interface={detected} or interface=auto",
        )


def load_app_target(import_string: str, *, app_dir: str, factory: bool, interface: str = "auto") -> AppTarget:
    """Import the app from ``app_dir``, check it is one, and settle its interface (``auto``: from the object).

    With ``app_factory=true`` and ``interface=auto`` the factory is called once here to see what it
    builds; name the interface to skip that call. A named interface the app object contradicts (Flask with
    ``interface=asgi``) is refused: every request would fail.
    """
    if interface not in INTERFACES:
        raise ConfigError("interface", interface, f"must be one of {', '.join(INTERFACES)}")
    directory = put_first_on_path(app_dir)
    obj = import_object(import_string, app_dir=directory)
    if factory and not callable(obj):
        raise ConfigError(
            "app", import_string, f"app_factory=true needs a callable that returns the app, got {type(obj).__name__}"
        )
    if interface != "auto":
        if not factory and not callable(obj):
            raise ConfigError("app", import_string, f"a {type(obj).__name__} is not callable, so it is not an app")
        if not factory:
            _check_forced(import_string, obj, interface)
        return AppTarget(import_string=import_string, factory=factory, interface=interface, directory=directory)
    app = _build(import_string, obj) if factory else obj
    detected = detect_interface(app)
    if detected is None:
        raise _neither(import_string, app, built=factory)
    return AppTarget(import_string=import_string, factory=factory, interface=detected, directory=directory)
