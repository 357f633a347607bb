"""Configuration from the environment, as containers and platforms set it.

``PYFLY_HYDRA_<KEY>``, with ``__`` for a dot and lower-cased, is the override ``key=value``
(``PYFLY_HYDRA_SERVER__WORKERS=4``: ``server.workers=4``); when the path names a config group of the shipped
tree it is the group's choice (``PYFLY_HYDRA_SERVER=uvicorn``, ``PYFLY_HYDRA_BENCH__WORKLOAD=mixed``). The
platforms' ``WEB_CONCURRENCY`` and ``PORT`` set their keys too, below a ``PYFLY_HYDRA_`` variable for the same
key. ``env_file`` (a ``.env``) sets variables not set yet before any of this is read, so the app sees them too.

The overrides go to Hydra before the command line's, and one whose key or group the command line sets is
dropped: schema defaults < config groups (``env=prod``) < the environment < the command line. The variables
the servers' own command lines read (``UVICORN_WORKERS``...) stay unread: one notice line names the
``PYFLY_HYDRA_`` variable to set instead.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Quote, QuotedString
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from pyfly_hydra.config.known_keys import unknown_key_message
from pyfly_hydra.config.schema import Config
from pyfly_hydra.demo import SERVER_ENV
from pyfly_hydra.errors import USER_FULL_ERROR_ENV, ConfigError
from pyfly_hydra.worker.app import FAILURE_REPORT_ENV, SPEC_ENV

logger = logging.getLogger("pyfly_hydra")

PREFIX = "PYFLY_HYDRA_"
SEPARATOR = "__"  # a key's dot, a group's slash
ENV_FILE_KEY = "env_file"
HYDRA_GROUPS = "hydra"  # Hydra's own groups (hydra/launcher, ...): set on the command line only

# Variables platforms set (Heroku, Cloud Run, Render, ...), and the key each sets; PYFLY_HYDRA_<KEY> wins over it.
CONVENTIONS: dict[str, str] = {"WEB_CONCURRENCY": "server.workers", "PORT": "server.port"}

# Variables the servers' own command lines read, which pyfly-hydra does not, and the key each one means here.
NOT_READ: dict[str, str] = {
    "UVICORN_WORKERS": "server.workers",
    "GRANIAN_WORKERS": "server.workers",
    "UVICORN_HOST": "server.host",
    "GRANIAN_HOST": "server.host",
    "UVICORN_PORT": "server.port",
    "GRANIAN_PORT": "server.port",
}

# pyfly-hydra's own variables, which pass state to its processes: named like settings, but none.
INTERNAL: frozenset[str] = frozenset({SPEC_ENV, FAILURE_REPORT_ENV, SERVER_ENV, USER_FULL_ERROR_ENV})


@dataclass(frozen=True)
class FromEnvironment:
    """One override a variable makes: ``PYFLY_HYDRA_SERVER__WORKERS=2`` is ``server.workers=2``."""

    variable: str
    value: str  # as the environment holds it
    key: str  # the key (server.workers), or the group (server, bench/workload)
    group: bool  # whether ``key`` is a config group, the value its choice
    override: str  # what Hydra is given: the value quoted where its grammar would read it otherwise

    def __str__(self) -> str:
        return f"{self.override} ({self.variable})"

    def named(self, reason: str) -> str:
        """A one-line message about this key that names the variable it came from."""
        return str(ConfigError(self.variable, self.value, f"{self.key}: {reason}"))


_applied: tuple[FromEnvironment, ...] = ()


def applied() -> tuple[FromEnvironment, ...]:
    """The overrides this process took from the environment (``apply_environment``), the command line's beaten."""
    return _applied


def variable_for(key: str) -> str:
    """The variable that sets ``key`` (a dotted key or a group): server.workers -> PYFLY_HYDRA_SERVER__WORKERS."""
    return PREFIX + re.sub(r"[./]", SEPARATOR, key).upper()


def config_groups(config_dir: Path) -> frozenset[str]:
    """The config groups of ``config_dir``: each directory that holds an option (``*.yaml``), Hydra's own aside."""
    found = {path.parent.relative_to(config_dir).as_posix() for path in config_dir.rglob("*.yaml")}
    return frozenset(group for group in found if group != "." and group.split("/")[0] != HYDRA_GROUPS)


def _is_map(hint: Any) -> bool:
    """Whether a schema field is a free mapping (``server.options``), whose keys the schema does not list."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return any(typing.get_origin(option) is dict for option in (typing.get_args(hint) if union else (hint,)))


def override_key(key: str) -> str | None:
    """``key`` as an override names it (``++`` for one under a free mapping), or None when the schema has none."""
    node: Any = Config
    parts = key.split(".")
    for index, part in enumerate(parts):
        hint = None if part.startswith("_") else typing.get_type_hints(node).get(part)
        if hint is None:
            return None
        last = index == len(parts) - 1
        if _is_map(hint) and not last:
            return f"++{key}"
        if not dataclasses.is_dataclass(hint):
            return key if last else None
        node = hint
    return key


def literal(name: str, value: str, parser: OverridesParser) -> str:
    """``name=value`` as Hydra reads it: as it is when the grammar reads ``value`` as a value (``4``, ``null``,
    ``[src,lib]``) that the schema then types, quoted when it would fail, sweep (``a,b``) or change the text."""
    plain, quoted = f"{name}={value}", f"{name}={QuotedString(text=value, quote=Quote.single).with_quotes()}"
    try:
        parsed = parser.parse_override(plain)
    except HydraException:  # the grammar's refusal
        return quoted
    if parsed.is_sweep_override():
        return quoted
    return plain if not isinstance(parsed.value(), str) or parsed.value() == value else quoted


def _read(variable: str, value: str, groups: frozenset[str], parser: OverridesParser) -> FromEnvironment:
    path = variable.removeprefix(PREFIX).lower().split(SEPARATOR)
    group = "/".join(path)
    if group in groups:
        return FromEnvironment(variable, value, group, True, literal(group, value, parser))
    key = ".".join(path)
    name = override_key(key)
    if name is None:
        also = f"; or a config group: {', '.join(sorted(groups))}" if len(path) == 1 else ""
        raise ConfigError(variable, value, f"{unknown_key_message(key)}{also}")
    return FromEnvironment(variable, value, key, False, literal(name, value, parser))


def environment_overrides(environ: Mapping[str, str], *, groups: frozenset[str]) -> list[FromEnvironment]:
    """The overrides ``environ`` makes, one per key: a ``PYFLY_HYDRA_`` variable's over a platform's.

    A ``PYFLY_HYDRA_`` name that is neither a key, a group nor one of pyfly-hydra's own raises ConfigError."""
    parser = OverridesParser.create()
    found = {
        key: FromEnvironment(name, environ[name], key, False, literal(key, environ[name], parser))
        for name, key in CONVENTIONS.items()
        if name in environ
    }
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in INTERNAL:
            read = _read(name, environ[name], groups, parser)
            found[read.key] = read
    return list(found.values())


def configures(name: str) -> bool:
    """Whether the variable ``name`` configures a run: a ``PYFLY_HYDRA_`` one (not our own) or a platform's."""
    return name in CONVENTIONS or (name.startswith(PREFIX) and name not in INTERNAL)


def without_configuration(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` less the variables that configure a run: for a child run whose configuration is complete."""
    return {name: value for name, value in environ.items() if not configures(name)}


def read_env_file(path: str, environ: MutableMapping[str, str]) -> None:
    """Set the variables of the ``.env`` file at ``path`` (relative to the current directory) that ``environ``
    does not have yet, as uvicorn's ``--env-file`` does."""
    from dotenv import dotenv_values

    try:
        text = Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise ConfigError(ENV_FILE_KEY, path, f"cannot be read: {reason} (in {Path.cwd()})") from None
    for name, value in dotenv_values(stream=io.StringIO(text)).items():
        if value is not None:
            environ.setdefault(name, value)


@dataclass(frozen=True)
class CommandLine:
    """The command line's arguments, and its overrides as written and as Hydra parses them."""

    arguments: list[str]
    overrides: list[str]
    parsed: list[Override]


def command_line(arguments: Sequence[str]) -> CommandLine:
    """``arguments`` read as Hydra's ``@hydra.main`` reads them."""
    overrides: list[str] = get_args_parser().parse_known_args(list(arguments))[0].overrides
    return CommandLine(list(arguments), overrides, OverridesParser.create().parse_overrides(overrides))


def _env_file(given: Sequence[Override], environ: Mapping[str, str]) -> str | None:
    """The env file to read: the command line's ``env_file=``, else ``PYFLY_HYDRA_ENV_FILE``'s."""
    for override in given:
        if override.key_or_group == ENV_FILE_KEY:
            if override.is_sweep_override():
                raise ConfigError(ENV_FILE_KEY, override.get_value_string(), "is read once, before composing: no sweep")
            value = override.value()
            return None if value is None else str(value)
    return environ.get(variable_for(ENV_FILE_KEY)) or None


def _first_override(line: CommandLine) -> int:
    """Where the command line's overrides start (together: Hydra's parser takes them so), or 0 without any."""
    arguments, overrides = line.arguments, line.overrides
    for index in range(len(arguments)):
        if overrides and arguments[index : index + len(overrides)] == overrides:
            return index
    return 0


def with_environment(
    line: CommandLine, environ: Mapping[str, str], *, groups: frozenset[str]
) -> tuple[list[str], tuple[FromEnvironment, ...]]:
    """The command line's arguments with the environment's overrides put before its own, less those whose key
    or group the command line sets (Hydra would take a group's last choice); and those put in."""
    keys = {override.key_or_group for override in line.parsed}
    kept = tuple(read for read in environment_overrides(environ, groups=groups) if read.key not in keys)
    at = _first_override(line)
    return [*line.arguments[:at], *(read.override for read in kept), *line.arguments[at:]], kept


def _may_apply(arguments: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the environment or an ``env_file`` on the command line may add an override at all."""
    return any(configures(name) for name in environ) or any(
        argument.lstrip("+~").startswith(ENV_FILE_KEY) for argument in arguments
    )


def apply_environment(arguments: Sequence[str], environ: MutableMapping[str, str], *, config_dir: Path) -> list[str]:
    """Read the env file the command line or the environment names into ``environ``, then return ``arguments``
    with the environment's overrides (``with_environment``), remembered for ``applied``."""
    global _applied
    _applied = ()
    if not _may_apply(arguments, environ):  # most starts: no Hydra parser built, no config tree walked
        return list(arguments)
    line = command_line(arguments)
    env_file = _env_file(line.parsed, environ)
    if env_file is not None:
        read_env_file(env_file, environ)
    spliced, _applied = with_environment(line, environ, groups=config_groups(config_dir))
    return spliced


def check_env_file(cfg: DictConfig, task_overrides: Iterable[str]) -> None:
    """Refuse an ``env_file`` set in a config file: it is read before the configuration is composed."""
    if cfg.get(ENV_FILE_KEY) is None:
        return
    if not any(override.lstrip("+~").partition("=")[0] == ENV_FILE_KEY for override in task_overrides):
        raise ConfigError(
            ENV_FILE_KEY,
            cfg.get(ENV_FILE_KEY),
            f"is read before composing: set it on the command line or as {variable_for(ENV_FILE_KEY)}",
        )


def unused_variables(cfg: DictConfig, environ: Mapping[str, str]) -> list[str]:
    """The servers' variables set in ``environ`` that no ``${oc.env:NAME}`` of ``cfg`` reads."""
    present = [name for name in NOT_READ if name in environ]
    if not present:  # the common case: no YAML dump of the whole config on every start
        return []
    text = OmegaConf.to_yaml(cfg)  # unresolved: the interpolations as written
    return [name for name in present if not re.search(rf"oc\.env:\s*['\"]?{name}\b", text)]


def notice_unused_variables(cfg: DictConfig) -> None:
    """One notice line naming the servers' variables this run does not read, and the ones to set instead."""
    unused = unused_variables(cfg, os.environ)
    if not unused:
        return
    listed = ", ".join(f"{name}={os.environ[name]}" for name in unused)
    instead = ", ".join(dict.fromkeys(f"{variable_for(NOT_READ[name])}={os.environ[name]}" for name in unused))
    logger.warning(
        "notice: %s %s not read: pyfly-hydra reads its own variables; set %s instead",
        listed,
        "is" if len(unused) == 1 else "are",
        instead,
    )
