"""Keys the schema does not know, added with ``+key=value``, refused as a misspelled key is.

Hydra's ``+`` adds a key even to a structured config, so ``+server.nope=1`` would otherwise reach the
server adapter's constructor and fail there with Hydra's instantiate error.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from omegaconf import DictConfig

from pyfly_hydra.config.schema import Config
from pyfly_hydra.errors import PyflyHydraError

USAGE_EXIT_CODE = 2


class UnknownKeyError(PyflyHydraError):
    """A key no part of pyfly-hydra reads."""

    exit_code = USAGE_EXIT_CODE


def schema_node(path: list[str]) -> Any:
    """The schema dataclass at ``path`` (e.g. ["server", "granian"]), or None when it is not a dataclass."""
    node: Any = Config
    for part in path:
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
    return node if dataclasses.is_dataclass(node) else None


def schema_keys(node: Any = Config, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every dotted key of the schema below ``node``, e.g. ``server.workers``, ``bench.capacity.step_seconds``."""
    keys: list[str] = []
    for name, hint in typing.get_type_hints(node).items():
        if name.startswith("_"):
            continue
        path = (*prefix, name)
        keys.extend(schema_keys(hint, path) if dataclasses.is_dataclass(hint) else [".".join(path)])
    return keys


def key_named(leaf: str) -> str | None:
    """The one schema key whose last part is ``leaf`` (``workers`` -> ``server.workers``), or None."""
    found = [key for key in schema_keys() if key.rpartition(".")[2] == leaf]
    return found[0] if len(found) == 1 else None


def unknown_key_message(full_key: str) -> str:
    """``key: unknown key; did you mean ...? allowed keys: ...`` for a key the schema lacks."""
    *parents, leaf = full_key.split(".")
    if parents == ["server", "options"]:  # server.options.<server>: a map the override adds to
        return f"{full_key}.*: a server's own option is added with a +: +{full_key}.NAME=VALUE"
    if parents[:2] == ["server", "options"] and len(parents) == 3:
        return f"{full_key}: a server's own option is added with a +: +{full_key}=..."
    node = schema_node(parents)
    if node is None:
        return f"{full_key}: unknown key"
    keys = [f.name for f in dataclasses.fields(node) if not f.name.startswith("_")]
    close = difflib.get_close_matches(leaf, keys, n=1)
    elsewhere = key_named(leaf)  # workers=2 at the top: server.workers
    hint = f"did you mean {'.'.join([*parents, close[0]])}? " if close else ""
    if not close and elsewhere is not None:
        hint = f"did you mean {elsewhere}? "
    return f"{full_key}: unknown key; {hint}allowed keys: {', '.join(keys)}"


def _check(node: DictConfig, path: list[str]) -> None:
    schema = schema_node(path)
    if schema is None:
        return
    known = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        name = str(key)
        if name not in known:
            raise UnknownKeyError(unknown_key_message(".".join([*path, name])))
        child = node._get_node(name)
        if isinstance(child, DictConfig):
            _check(child, [*path, name])


def check_known_keys(cfg: DictConfig) -> None:
    """Raise UnknownKeyError naming the first key of ``cfg`` that the schema does not have."""
    for key in cfg:
        name = str(key)
        if name == "hydra":
            continue
        if name not in {f.name for f in dataclasses.fields(Config)}:
            raise UnknownKeyError(unknown_key_message(name))
        child = cfg._get_node(name)
        if isinstance(child, DictConfig):
            _check(child, [name])
