"""Turn any error of a run into one line that names the key, the bad value and what is allowed."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator
from typing import Any

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from pyfly_hydra.config import Config
from pyfly_hydra.errors import PyflyHydraError, format_value

USAGE_EXIT_CODE = 2


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _schema_node(path: list[str]) -> Any:
    """The schema dataclass at ``path`` (e.g. ["server", "granian"]), or None when it is not a dataclass."""
    node: Any = Config
    for part in path:
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
    return node if dataclasses.is_dataclass(node) else None


def _type_name(full_key: str) -> str:
    *parents, leaf = full_key.split(".")
    node = _schema_node(parents)
    if node is None:
        return "a different type"
    hint = typing.get_type_hints(node).get(leaf)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    text = names.get(base, getattr(base, "__name__", str(base)))
    return f"{text} or null" if args else text


def _unknown_key(error: OmegaConfBaseException) -> str:
    full_key = str(error.full_key)
    *parents, leaf = full_key.split(".")
    node = _schema_node(parents)
    if node is None:
        return f"{full_key}: unknown key"
    keys = [f.name for f in dataclasses.fields(node) if not f.name.startswith("_")]
    close = difflib.get_close_matches(leaf, keys, n=1)
    hint = f"did you mean {'.'.join([*parents, close[0]])}? " if close else ""
    return f"{full_key}: unknown key; {hint}allowed keys: {', '.join(keys)}"


def _missing_option(error: MissingConfigException) -> str:
    missing = error.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if group and error.options is not None:
        options = ", ".join(sorted(error.options))
        return f"{group}={option}: no such {group} config; choose one of {options}"
    return str(error).splitlines()[0]


def describe(error: BaseException) -> tuple[str, int]:
    """One line for ``error`` and the exit code to leave with."""
    for cause in _chain(error):
        if isinstance(cause, PyflyHydraError):
            return str(cause), cause.exit_code
    for cause in _chain(error):
        if isinstance(cause, MissingConfigException):
            return _missing_option(cause), USAGE_EXIT_CODE
        if isinstance(cause, ConfigKeyError | AttributeError) and getattr(cause, "full_key", None):
            return _unknown_key(cause), USAGE_EXIT_CODE  # type: ignore[arg-type]
        if isinstance(cause, ValidationError) and cause.full_key:
            value = format_value(cause.value)
            return f"{cause.full_key}={value}: must be {_type_name(str(cause.full_key))}", USAGE_EXIT_CODE
        if isinstance(cause, OverrideParseException):
            reason = str(cause).splitlines()[0]
            return f"{cause.override}: not a valid override ({reason}); expected key=value", USAGE_EXIT_CODE
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return f"{first.strip()} ({type(error).__name__})", 1
