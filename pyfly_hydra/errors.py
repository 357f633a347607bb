"""Errors the command line turns into one clear line and a non-zero exit code."""

from __future__ import annotations

from typing import Any

# Whether the user asked for tracebacks (HYDRA_FULL_ERROR=1) before the command line set it for itself.
USER_FULL_ERROR_ENV = "PYFLY_HYDRA_FULL_ERROR"


class PyflyHydraError(Exception):
    """Base class: ``str(error)`` is the whole one-line message shown to the user."""

    exit_code = 1


class ConfigError(PyflyHydraError):
    """A configuration value that cannot be used: names the key, the bad value and what is allowed."""

    exit_code = 2

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key}={format_value(value)}: {allowed}")


class ServeError(PyflyHydraError):
    """The configuration is valid but the server could not start or stopped abnormally."""


def format_value(value: Any) -> str:
    """Render a config value the way a user would type it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value) if (not value or any(c.isspace() for c in value)) else value
    return str(value)
