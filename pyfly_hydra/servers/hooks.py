"""The private internals of a server that pyfly-hydra replaces, checked before serving.

Each adapter lists the hooks it patches or subclasses (``module:Class.attribute``). A server release
that renames one would otherwise crash mid-serve or, worse, silently skip the fix; instead the run is
refused in one line naming the server, its version, the hook, what it is for and the tested range.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from importlib import import_module

from pyfly_hydra.errors import ConfigError


@dataclass(frozen=True)
class Hook:
    """One replaced internal: ``module:Class.attribute`` (or ``module:function``), and what needs it."""

    target: str
    purpose: str
    key: str | None = None  # needed only when this server.* key is set

    def exists(self) -> bool:
        return _exists(self.target)


@functools.cache
def _exists(target: str) -> bool:
    module_name, _, path = target.partition(":")
    try:
        obj: object = import_module(module_name)
    except ImportError:
        return False
    *owners, attribute = path.split(".")
    for name in owners:
        obj = getattr(obj, name, None)
        if obj is None:
            return False
    if hasattr(obj, attribute):
        return True
    # An instance attribute: set by the class's __init__.
    init = getattr(obj, "__init__", None)
    try:
        source = inspect.getsource(init)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    return isinstance(obj, type) and re.search(rf"self\.{attribute}\s*[:=]", source) is not None


def require_hooks(server: str, version: str, hooks: tuple[Hook, ...], *, keys_set: set[str]) -> None:
    """Refuse to serve when a hook this run needs is missing from the installed server."""
    for hook in hooks:
        if (hook.key is None or hook.key in keys_set) and not hook.exists():
            # Here, not at the top: the declared ranges import packaging's requirement parser, 50 ms of start-up.
            from pyfly_hydra.config.versions import declared_range

            tested = declared_range(server)
            raise ConfigError(
                "server" if hook.key is None else f"server.{hook.key}",
                server if hook.key is None else "set",
                f"{server} {version} has no {hook.target}, which pyfly-hydra replaces for {hook.purpose}"
                f" (tested: {server}{tested or ''}); install a tested version",
            )
