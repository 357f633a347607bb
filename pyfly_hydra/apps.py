"""Where the app comes from: an import string checked in the parent before any server starts."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any

from pyfly_hydra.errors import ConfigError

EXAMPLE = "pyfly_hydra.demo:app"


@dataclass(frozen=True)
class AppTarget:
    """An ASGI app as servers load it: ``module:attribute``, optionally a factory to call."""

    import_string: str
    factory: bool = False


def ensure_cwd_importable() -> None:
    """Let ``app=main:app`` find ``main.py`` in the current directory, as ``uvicorn main:app`` does."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def is_asgi_callable(obj: Any) -> bool:
    """True for ``async def app(scope, receive, send)`` and objects whose ``__call__`` is async."""
    if inspect.isclass(obj):
        return False
    return inspect.iscoroutinefunction(obj) or (callable(obj) and inspect.iscoroutinefunction(obj.__call__))


def _import_module(import_string: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                "app", import_string, f"no module named '{module_name}' (searched the current directory and sys.path)"
            ) from None
        raise ConfigError(
            "app", import_string, f"importing '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from None
    except Exception as exc:
        raise ConfigError(
            "app", import_string, f"importing '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from None


def import_object(import_string: str) -> Any:
    """The object ``module:attribute`` names (dotted attributes allowed); ConfigError naming ``app`` if none."""
    module_name, sep, attribute = import_string.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError("app", import_string, f"expected an import string 'module:attribute', e.g. {EXAMPLE}")
    obj = _import_module(import_string, module_name)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError("app", import_string, f"module '{module_name}' has no attribute '{attribute}'") from None
    return obj


def load_app_target(import_string: str, *, factory: bool) -> AppTarget:
    """Import the app once to fail fast with one clear line; the server imports it again in each worker."""
    ensure_cwd_importable()
    obj = import_object(import_string)
    if factory:
        if not callable(obj):
            raise ConfigError(
                "app",
                import_string,
                f"app_factory=true needs a callable that returns the app, got {type(obj).__name__}",
            )
    elif not is_asgi_callable(obj):
        raise ConfigError(
            "app",
            import_string,
            f"a {type(obj).__name__} is not an ASGI application (async def app(scope, receive, send));"
            " set app_factory=true if it builds the app",
        )
    return AppTarget(import_string=import_string, factory=factory)
