"""The tuner's search space: Hydra sweep overrides read as optuna distributions, with per-server spaces.

``hydra.sweeper.params`` and the command line give the space every trial draws from, in Hydra's own sweep
grammar: ``choice(a,b)`` (or ``a,b``), ``range(1,5)`` (1 to 4, as Hydra's grid reads it) and
``interval(0.5,2)`` (``tag(log, interval(...))`` for a log scale, ``tag(int, interval(1,64))`` for
integers). ``hydra.sweeper.spaces.<server>`` adds keys drawn only when a trial runs on that server, so
granian-only keys are never set on uvicorn. A plain value is fixed for every trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from pyfly_hydra.config.resolvers import pick
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.registry import SERVER_NAMES

if TYPE_CHECKING:
    from optuna.trial import Trial

ROUND_KEY = "bench.round"  # a configuration measured again, not a dimension (see pyfly_hydra.bench.rounds)


@dataclass(frozen=True)
class Dimension:
    """One key a trial draws a value for."""

    key: str
    choices: tuple[str, ...] = ()  # categorical: the override strings as Hydra writes them
    low: float = 0.0
    high: float = 0.0
    step: int | None = None  # an integer dimension (None: a float one)
    log: bool = False

    def suggest(self, trial: Trial) -> str:
        """The override ``key=value`` this trial runs with."""
        if self.choices:
            return f"{self.key}={trial.suggest_categorical(self.key, list(self.choices))}"
        if self.step is not None:
            step = 1 if self.log else self.step  # optuna takes a log scale with step 1 only
            value: float = trial.suggest_int(self.key, int(self.low), int(self.high), step=step, log=self.log)
        else:
            value = trial.suggest_float(self.key, self.low, self.high, log=self.log)
        return f"{self.key}={value}"


@dataclass
class SearchSpace:
    """What every trial draws (``dimensions``) or keeps (``fixed``), and the per-server additions."""

    dimensions: list[Dimension] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    rounds: list[str] = field(default_factory=lambda: ["1"])
    per_server: dict[str, SearchSpace] = field(default_factory=dict)
    default_server: str = "auto"

    def suggest(self, trial: Trial) -> list[str]:
        """The overrides of one trial: the server first, then the shared keys, then that server's own."""
        drawn = [dimension.suggest(trial) for dimension in self.dimensions]
        server = self._server(drawn)
        trial.set_user_attr("server", server)
        own = self.per_server.get(server)
        if own is not None:
            drawn += [dimension.suggest(trial) for dimension in own.dimensions] + own.fixed
        return self.fixed + drawn

    def _server(self, drawn: list[str]) -> str:
        chosen = self.default_server
        for override in [*self.fixed, *drawn]:
            if override.startswith("server="):
                chosen = override.split("=", 1)[1]
        return pick("server") if chosen == "auto" else chosen


def dimension(override: Override) -> Dimension:
    """The dimension a sweep override describes."""
    key = override.get_key_element()
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return Dimension(key, choices=tuple(override.sweep_string_iterator()))
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if all(isinstance(number, int) for number in (start, stop, step)) and step > 0:
            if stop <= start:
                raise ConfigError(key, f"range({start},{stop})", "is empty: the stop is excluded, as in Hydra's grid")
            last = start + step * ((stop - 1 - start) // step)
            return Dimension(key, low=start, high=last, step=step)
        return Dimension(key, choices=tuple(override.sweep_string_iterator()))
    if isinstance(sweep, IntervalSweep):
        if sweep.start is None or sweep.end is None or not sweep.start < sweep.end:
            raise ConfigError(key, f"interval({sweep.start},{sweep.end})", "needs a low bound below the high one")
        tags = set(sweep.tags or ())
        if "log" in tags and sweep.start <= 0:
            raise ConfigError(key, f"interval({sweep.start},{sweep.end})", "a log scale needs bounds above 0")
        step = 1 if "int" in tags else None
        return Dimension(key, low=sweep.start, high=sweep.end, step=step, log="log" in tags)
    raise ConfigError(key, override.get_value_element_as_str(), "is not a sweep the tuner reads")


def parse_space(
    *,
    params: Mapping[str, Any],
    arguments: list[str],
    spaces: Mapping[str, Mapping[str, Any]],
    parser: OverridesParser,
    default_server: str,
    servers: Sequence[str] = SERVER_NAMES,
) -> SearchSpace:
    """The search space from ``hydra.sweeper.params``, the command line and ``hydra.sweeper.spaces``
    (``servers``: every server a run may choose, the user's own included)."""
    space = _parse([f"{key}={value}" for key, value in params.items()] + arguments, parser)
    space.default_server = default_server
    for server, keys in spaces.items():
        if server not in servers:
            raise ConfigError("hydra.sweeper.spaces", server, f"must name a server: {', '.join(servers)}")
        own = _parse([f"{key}={value}" for key, value in (keys or {}).items()], parser)
        if any(d.key == ROUND_KEY for d in own.dimensions) or own.rounds != ["1"]:
            raise ConfigError(f"hydra.sweeper.spaces.{server}", ROUND_KEY, "rounds are set by bench.rounds")
        space.per_server[server] = own
    return space


def _parse(overrides: list[str], parser: OverridesParser) -> SearchSpace:
    space = SearchSpace()
    by_key: dict[str, Dimension | str] = {}
    for override in parser.parse_overrides(overrides):
        key = override.get_key_element()
        if key == ROUND_KEY:
            space.rounds = (
                list(override.sweep_string_iterator())
                if override.is_sweep_override()
                else [override.get_value_element_as_str()]
            )
        elif override.is_sweep_override():
            by_key[key] = dimension(override)
        else:
            by_key[key] = f"{key}={override.get_value_element_as_str()}"
    for value in by_key.values():  # a later override of a key replaces an earlier one, as in Hydra
        if isinstance(value, Dimension):
            space.dimensions.append(value)
        else:
            space.fixed.append(value)
    return space
