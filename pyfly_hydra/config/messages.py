"""Turn any error of a run into one line that names the key, the bad value and what is allowed."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigKeyError, ConfigTypeError, OmegaConfBaseException, ValidationError

from pyfly_hydra.config.known_keys import USAGE_EXIT_CODE, schema_node, unknown_key_message
from pyfly_hydra.errors import PyflyHydraError, format_value

# Hydra's answer to +GROUP=OPTION for a group the primary config's defaults list already names (env, sweep).
MULTIPLE_VALUES = re.compile(r"Multiple values for (\S+)\. To override a value use 'override \S+: (\S+)'")
COMPOSING = re.compile(r"In '([^']+)': ")  # Hydra names the config file it was merging when a key failed
QUOTE_WORTHY = "=?,[]{}()*:"  # characters Hydra's override grammar gives a meaning to
# Hydra plugins of ours that exist only with an extra installed: the module, its config choice, the extra.
OPTIONAL_PLUGINS = {"hydra_plugins.pyfly_hydra_ray.": ("hydra/launcher", "ray_bench", "ray")}


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _type_name(full_key: str) -> str:
    *parents, leaf = full_key.split(".")
    node = schema_node(parents)
    if node is None:
        return "a different type"
    hint = typing.get_type_hints(node).get(leaf)
    if typing.get_origin(hint) is list:
        return "a list of strings, e.g. [a,b]"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    text = names.get(base, getattr(base, "__name__", str(base)))
    return f"{text} or null" if args else text


def _unknown_key(error: OmegaConfBaseException, composing: str | None) -> str:
    """``composing``: the config file Hydra was merging (``env/mine``), whose keys may lack their package."""
    full_key = str(error.full_key)
    message = unknown_key_message(full_key)
    group, _, option = (composing or "").rpartition("/")
    if group and full_key.split(".")[0] == group:
        # env=mine put its keys under env: its file lacks Hydra's package header.
        return (
            f"{message.partition(';')[0]}; {group}={option} put its keys under {group}: its file"
            f" {composing}.yaml must start with the line '# @package _global_'"
        )
    return message


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
    composing = next(filter(None, (COMPOSING.match(str(cause)) for cause in _chain(error))), None)
    for cause in _chain(error):
        if isinstance(cause, MissingConfigException):
            return _missing_option(cause), USAGE_EXIT_CODE
        if isinstance(cause, ConfigKeyError | AttributeError) and getattr(cause, "full_key", None):
            return _unknown_key(cause, composing and composing.group(1)), USAGE_EXIT_CODE  # type: ignore[arg-type]  # type: ignore[arg-type]
        if isinstance(cause, ValidationError | ConfigTypeError) and cause.full_key:
            value = format_value(cause.value)
            return f"{cause.full_key}={value}: must be {_type_name(str(cause.full_key))}", USAGE_EXIT_CODE
        multiple = MULTIPLE_VALUES.match(str(cause)) if isinstance(cause, ConfigCompositionException) else None
        if multiple is not None:
            group, option = multiple.groups()
            return f"+{group}={option}: {group} is chosen without a +: {group}={option}", USAGE_EXIT_CODE
        if isinstance(cause, OverrideParseException):
            reason = str(cause).splitlines()[0]
            key, equals, value = str(cause.override).partition("=")
            if equals and any(c in value for c in QUOTE_WORTHY):
                hint = f"quote the value: '{key}=\"{value}\"' (= , [ ] {{ }} and more mean something to Hydra)"
                return f"{cause.override}: not a valid override; {hint}", USAGE_EXIT_CODE
            return f"{cause.override}: not a valid override ({reason}); expected key=value", USAGE_EXIT_CODE
        if isinstance(cause, RuntimeError) and str(cause).startswith("Unknown plugin class"):
            for module, (group, choice, extra) in OPTIONAL_PLUGINS.items():
                if module in str(cause):
                    return f"{group}={choice}: needs pip install 'pyfly-hydra[{extra}]'", USAGE_EXIT_CODE
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return f"{first.strip()} ({type(error).__name__})", 1
