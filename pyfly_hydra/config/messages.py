"""Turn any error of a run into one line that names the key, the bad value and what is allowed; and the variable,
when the key came from the environment (``pyfly_hydra.config.environment``)."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Sequence

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigKeyError, ConfigTypeError, OmegaConfBaseException, ValidationError

from pyfly_hydra.config.environment import FromEnvironment
from pyfly_hydra.config.known_keys import USAGE_EXIT_CODE, schema_node, unknown_key_message
from pyfly_hydra.errors import ConfigError, PyflyHydraError, format_value

# Hydra's answer to +GROUP=OPTION for a group the primary config's defaults list already names (env, sweep).
MULTIPLE_VALUES = re.compile(r"Multiple values for (\S+)\. To override a value use 'override \S+: (\S+)'")
COMPOSING = re.compile(r"In '([^']+)': ")  # Hydra names the config file it was merging when a key failed
MERGING = re.compile(r"Error merging override (.+)")  # and the override, when it was one
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


def _missing_option(error: MissingConfigException, from_environment: Sequence[FromEnvironment]) -> str:
    missing = error.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if group and error.options is not None:
        reason = f"no such {group} config; choose one of {', '.join(sorted(error.options))}"
        origin = next((read for read in from_environment if read.group and read.key == group), None)
        return origin.named(reason) if origin is not None else f"{group}={option}: {reason}"
    return str(error).splitlines()[0]


def _merged_from(error: BaseException, from_environment: Sequence[FromEnvironment]) -> FromEnvironment | None:
    """The environment's override whose merge failed in ``error``, if one did."""
    for cause in _chain(error):
        merging = MERGING.match(str(cause)) if isinstance(cause, ConfigCompositionException) else None
        if merging is not None:
            return next((read for read in from_environment if read.override == merging.group(1)), None)
    return None


def describe(error: BaseException, from_environment: Sequence[FromEnvironment] = ()) -> tuple[str, int]:
    """One line for ``error`` and the exit code to leave with; ``from_environment``: the overrides the environment
    made, whose variable the line names when one of them is at fault."""
    for cause in _chain(error):
        if isinstance(cause, ConfigError):
            origin = next((read for read in from_environment if not read.group and read.key == cause.key), None)
            return (origin.named(cause.allowed) if origin else str(cause)), cause.exit_code
        if isinstance(cause, PyflyHydraError):
            return str(cause), cause.exit_code
    composing = next(filter(None, (COMPOSING.match(str(cause)) for cause in _chain(error))), None)
    for cause in _chain(error):
        if isinstance(cause, MissingConfigException):
            return _missing_option(cause, from_environment), USAGE_EXIT_CODE
        if isinstance(cause, ConfigKeyError | AttributeError) and getattr(cause, "full_key", None):
            return _unknown_key(cause, composing and composing.group(1)), USAGE_EXIT_CODE  # type: ignore[arg-type]  # type: ignore[arg-type]
        if isinstance(cause, ValidationError | ConfigTypeError) and cause.full_key:
            full_key, reason = str(cause.full_key), f"must be {_type_name(str(cause.full_key))}"
            message = f"{full_key}={format_value(cause.value)}: {reason}"
            origin = _merged_from(error, from_environment)
            if origin is not None:
                return origin.named(reason if origin.key == full_key else message), USAGE_EXIT_CODE
            return message, USAGE_EXIT_CODE
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
