"""A sweep's rounds grouped per configuration: n, median, spread, and an interval of each configuration's ratio
to the best, so configurations the data cannot tell apart are called a **tie**.

The verdict is calibrated: a configuration identical to the best is called **worse** at most ``LEVEL`` (2.5%) of
the time, for every number of rounds the tool allows (2 and up) and however many configurations the sweep has.
Two things make that hold at small n, where a bootstrap of medians cannot (with two rounds each, identical
configurations land wholly on one side of each other one time in three):

- the rounds' noise is estimated from every configuration at once (the pooled variance of the log of the metric:
  on one machine the noise is a similar share of every configuration's figure), so two rounds each over twelve
  configurations give twelve degrees of freedom, not one;
- the best was *picked* as the best, so it looks better than it is: the critical value is the one that keeps an
  identical configuration's standardised gap to the picked best below it 97.5% of the time, found by simulating
  the sweep's own design (its rounds per configuration, the best picked by median), seeded, so a summary repeats.

The interval shown is the ratio of geometric means with that margin, oriented so that 1.0 is the best; a
configuration whose interval reaches 1.0 is tied with the best; among the tied, the tie-break rule picks the
winner. Only when no configuration has two clean rounds is there nothing to measure the noise with (``n=1``).
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]
LEVEL = 0.025  # how often an identical configuration may be called worse: half of 5%, a margin for real noise
COMPARISONS = 40_000  # simulated comparisons behind a critical value (at least MIN_SIMULATIONS sweeps)
MIN_SIMULATIONS = 1_000
SEED = 20_171_022  # the simulations' seed: the same sweep gives the same summary
# Among tied configurations: for a throughput metric, lower p99, then lower CPU, then lower RSS; for a latency
# metric, higher throughput first.
TIE_BREAKS: dict[bool, tuple[tuple[str, bool], ...]] = {
    True: (("p99_ms", False), ("server_cpu_percent", False), ("server_peak_rss_mib", False)),
    False: (("rps", True), ("server_cpu_percent", False), ("server_peak_rss_mib", False)),
}


@dataclass
class Configuration:
    """Every round of one configuration (one label) of a sweep."""

    label: str
    rounds: list[Record]
    metric: str
    values: list[float] = field(default_factory=list)  # the metric of each clean round
    ratio: float | None = None  # median / best median, oriented: 1.0 is the best, lower is worse
    ratio_interval: tuple[float, float] | None = None
    verdict: str = ""  # best | winner | tie | worse | n=1 | errors | failed
    rank: int = 0

    @property
    def clean(self) -> list[Record]:
        """The rounds that ran and answered every request correctly."""
        return [r for r in self.rounds if r["status"] == "ok" and r["errors"] == 0]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def median_of(self, key: str) -> float:
        """The median of another figure over the clean rounds (NaN when none has it)."""
        values = [r[key] for r in self.clean if isinstance(r.get(key), int | float)]
        return statistics.median(values) if values else math.nan

    @property
    def errors(self) -> int | None:
        """Failed requests over every round that ran (None: none ran)."""
        ran = [r["errors"] for r in self.rounds if r["status"] == "ok"]
        return sum(ran) if ran else None

    @property
    def client_saturated(self) -> bool:
        """Whether the load client was the bottleneck in any round."""
        return any(r.get("client_saturated") for r in self.rounds)

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest round."""
        return (min(self.values), max(self.values)) if self.values else (math.nan, math.nan)

    @property
    def first(self) -> Record:
        """The record that stands for the configuration: its first clean round, else its first round."""
        return (self.clean or self.rounds)[0]


def group(records: Sequence[Record], metric: str) -> list[Configuration]:
    """The records grouped by configuration, in order of first appearance: the server's label (what the user
    varied) plus the ``bench.*`` overrides that differ between jobs (a concurrency ladder, several rates)."""
    varied = varied_bench_keys(records)
    groups: dict[str, Configuration] = {}
    for record in sorted(records, key=lambda r: r.get("round", 1)):
        settings = [o for o in record.get("bench_overrides", []) if o.split("=", 1)[0] in varied]
        server = [] if record["label"] == "(defaults)" else [record["label"]]
        label = " ".join([*server, *settings]) or "(defaults)"
        configuration = groups.setdefault(label, Configuration(label, [], metric))
        configuration.rounds.append(record)
    for configuration in groups.values():
        configuration.values = [float(r[metric]) for r in configuration.clean if _finite(r.get(metric))]
    return list(groups.values())


def varied_bench_keys(records: Sequence[Record]) -> set[str]:
    """The ``bench.*`` keys whose override differs between the records."""
    seen: dict[str, set[str | None]] = {}
    settings = [dict(o.split("=", 1) for o in r.get("bench_overrides", [])) for r in records]
    for key in {key for each in settings for key in each}:
        seen[key] = {each.get(key) for each in settings}
    return {key for key, values in seen.items() if len(values) > 1}


@functools.cache
def critical_value(sizes: tuple[int, ...]) -> float:
    """The gap, in standard errors, an identical configuration stays under 1 - ``LEVEL`` of the time when compared
    with the best of a sweep whose configurations have ``sizes`` clean rounds (sorted), the best picked by median.

    Simulated: every configuration drawn from one normal distribution, the best picked as the report picks it, each
    other one's gap to it standardised with the pooled variance, as ``_judge`` does."""
    draw = random.Random(SEED)
    count = len(sizes)
    freedom = sum(size - 1 for size in sizes)
    gaps: list[float] = []
    for _ in range(max(MIN_SIMULATIONS, -(-COMPARISONS // (count - 1)))):
        samples = [[draw.gauss(0.0, 1.0) for _ in range(size)] for size in sizes]
        medians = [statistics.median(sample) for sample in samples]
        best = max(range(count), key=medians.__getitem__)
        means = [math.fsum(sample) / len(sample) for sample in samples]
        spread = math.sqrt(
            math.fsum((x - mean) ** 2 for sample, mean in zip(samples, means, strict=True) for x in sample) / freedom
        )
        for other in range(count):
            if other != best:
                error = spread * math.sqrt(1 / sizes[other] + 1 / sizes[best])
                gaps.append((means[best] - means[other]) / error)
    gaps.sort()
    return gaps[min(len(gaps) - 1, int((1 - LEVEL) * len(gaps)))]


def rank_configurations(records: Sequence[Record], metric: str, bigger_is_better: bool) -> list[Configuration]:
    """Group, rank by median, mark ties with the best, and put the tie-break's winner first."""
    configurations = group(records, metric)
    clean = [c for c in configurations if c.values and len(c.clean) == len(c.rounds)]
    dirty = [c for c in configurations if c.values and len(c.clean) < len(c.rounds)]
    failed = [c for c in configurations if not c.values]
    clean.sort(key=lambda c: c.median, reverse=bigger_is_better)
    dirty.sort(key=lambda c: c.median, reverse=bigger_is_better)
    if clean:
        _judge(clean, bigger_is_better)
    for configuration in dirty:
        configuration.verdict = "errors"
    for configuration in failed:
        configuration.verdict = "failed"
    ranked = clean + dirty + failed
    for position, configuration in enumerate(ranked, start=1):
        configuration.rank = position
    return ranked


def _judge(clean: list[Configuration], bigger_is_better: bool) -> None:
    """Ratios, intervals and verdicts against the best median; the tie-break's pick moves to the front."""
    best = clean[0]
    logs = {id(c): [_oriented_log(value, bigger_is_better) for value in c.values] for c in clean}
    means = {key: math.fsum(values) / len(values) for key, values in logs.items()}
    freedom = sum(c.n - 1 for c in clean)
    spread = 0.0
    if freedom:
        squares = math.fsum((x - means[key]) ** 2 for key, values in logs.items() for x in values)
        spread = math.sqrt(squares / freedom)
    critical = critical_value(tuple(sorted(c.n for c in clean))) if freedom and len(clean) > 1 else math.nan
    for configuration in clean:
        configuration.ratio = _oriented(configuration.median, best.median, bigger_is_better)
        if configuration is best:
            configuration.verdict = "best"
        elif not freedom:
            configuration.verdict = "n=1"
        else:
            gap = means[id(configuration)] - means[id(best)]
            margin = critical * spread * math.sqrt(1 / configuration.n + 1 / best.n)
            configuration.ratio_interval = (math.exp(gap - margin), math.exp(gap + margin))
            configuration.verdict = "tie" if gap + margin >= 0 else "worse"
    tied = [c for c in clean if c.verdict in ("best", "tie")]
    if len(tied) > 1:
        winner = min(tied, key=lambda c: tie_break_key(c, bigger_is_better))
        winner.verdict = "winner"
        clean.remove(winner)
        clean.insert(0, winner)
        for configuration in tied:
            if configuration is not winner:
                configuration.verdict = "tie"


def tie_break_key(configuration: Configuration, bigger_is_better: bool) -> tuple[float, ...]:
    """Smaller is preferred: each figure of the tie-break rule, signed so that the better value is smaller."""
    key = []
    for name, higher_is_better in TIE_BREAKS[bigger_is_better]:
        value = configuration.median_of(name)
        key.append(math.inf if math.isnan(value) else (-value if higher_is_better else value))
    return tuple(key)


def tie_break_rule(bigger_is_better: bool) -> str:
    """The tie-break rule in words."""
    words = {"p99_ms": "p99", "rps": "rps", "server_cpu_percent": "server CPU", "server_peak_rss_mib": "peak RSS"}
    return ", then ".join(
        f"{'higher' if higher else 'lower'} {words[name]}" for name, higher in TIE_BREAKS[bigger_is_better]
    )


def _oriented(value: float, best: float, bigger_is_better: bool) -> float:
    if bigger_is_better:
        return value / best if best else math.nan
    return best / value if value else math.nan


def _oriented_log(value: float, bigger_is_better: bool) -> float:
    """The log of a round's figure, signed so that bigger is better (a figure is positive; 0 is floored)."""
    logged = math.log(max(value, 1e-12))
    return logged if bigger_is_better else -logged


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
