"""After a ``-m mode=bench`` sweep: rank the jobs and write summary.{csv,md,png} and best.yaml.

best.yaml (and the environment ``pyfly-hydra-promote`` writes) is data, not code: its body comes from a
YAML emitter, and every comment line is made of one printable line. YAML ends a comment at any line
break it knows (``\n``, ``\r``, U+0085, U+2028, U+2029), and Hydra's header reader splits lines at the
rest of Python's (vertical tab, form feed, U+001C..U+001E): a recorded string (a sweep directory, a
label, a CPU name) holding one would otherwise start a line of YAML, e.g. ``app: evilmod:app``, that
serving the environment imports.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf._utils import get_omega_conf_dumper

from pyfly_hydra.bench.metrics import METRICS
from pyfly_hydra.bench.outcome import RECORD_NAME
from pyfly_hydra.bench.report.uncertainty import (
    Configuration,
    Record,
    rank_configurations,
    tie_break_rule,
)
from pyfly_hydra.config.schema import ServerProperties
from pyfly_hydra.registry import SERVERS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger("pyfly_hydra")

CSV_COLUMNS = (
    "rank", "verdict", "job", "round", "label", "status", "reason", "server", "server_version", "loop", "workers",
    "http", "workload", "client", "connections", "duration", "requests", "errors", "rps", "capacity", "ratio_to_best",
    "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_percent", "server_peak_rss_mib", "client_cpu_cores",
    "client_saturated",
)  # fmt: skip
SERVER_COLOURS = {server.name: server.colour for server in SERVERS}  # summary.png and .html
OTHER_COLOUR = "#8d99ae"
NOT_ENV_KEYS = ("host", "port")  # a benchmark always serves on 127.0.0.1 and a free port
# A config group option as Hydra names it (``granian``, ``my/server``): no line break, no ``..`` out of the group.
UNFOLDED = 1 << 30  # the YAML emitter's line width: never fold a value over lines
OPTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
VERDICTS = {
    "best": "**best**",
    "winner": "**best** (tie broken)",
    "tie": "tie",
    "worse": "worse",
    "n=1": "n=1: no confidence",
    "errors": "errors",
    "failed": "failed",
}


class RecordError(ValueError):
    """A record that cannot become an environment (its server or loop is no config name)."""


def one_line(text: str) -> str:
    """``text`` as one printable line: every other character (line breaks of any kind, controls, format
    characters, lone surrogates) as a visible escape, e.g. ``\\n``, ``\\x85``, ``\\u2028``."""
    return "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode("ascii") for char in text
    )


def comment_block(lines: list[str]) -> str:
    """Comment lines as YAML text, each one line that no recorded string can end early."""
    return "".join(f"{one_line(line if line.startswith('#') else '# ' + line)}\n" for line in lines)


class _EnvDumper(get_omega_conf_dumper()):  # type: ignore[misc]
    """OmegaConf's YAML dumper; a string with any character that is not printable is double-quoted, where
    YAML escapes it (``\\N``, ``\\L``): one line each, read back as it was (PyYAML's single-quoted style
    writes U+0085 as a raw line break and reads it back as a space)."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        if all(char.isprintable() or char == " " for char in data):
            return get_omega_conf_dumper().str_representer(self, data)
        return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')


_EnvDumper.add_representer(str, _EnvDumper.represent_str)


def env_yaml(body: dict[str, Any]) -> str:
    """An env file's body as YAML, from the emitter (never from formatted strings), each value on its key's line
    (no folding: a reviewer reads, and greps, one line per value)."""
    return yaml.dump(
        body, Dumper=_EnvDumper, default_flow_style=False, allow_unicode=True, sort_keys=False, width=UNFOLDED
    )


def load_records(sweep_dir: Path) -> list[Record]:
    """Every job's bench.json under ``sweep_dir``, in job order."""
    records = []
    for path in sweep_dir.glob(f"*/{RECORD_NAME}"):
        record = json.loads(path.read_text())
        if record.get("job") is None:  # a single run's record (no multirun numbered it): its directory names it
            record["job"] = path.parent.name
        records.append(record)
    return sorted(records, key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else math.inf)


def sweep_metric(records: list[Record]) -> str:
    """The ``bench.metric`` the sweep's jobs returned (rps when none says)."""
    return next((r["metric"] for r in records if r.get("metric")), "rps")


def rank(records: list[Record], metric: str) -> list[Configuration]:
    """The sweep's configurations, ranked (see :mod:`.uncertainty`)."""
    return rank_configurations(records, metric, METRICS[metric])


def write_csv(path: Path, ranked: list[Configuration]) -> None:
    """One row per job (a configuration's round), in rank order."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for configuration in ranked:
            ratio = None if configuration.ratio is None else round(configuration.ratio, 3)
            for record in configuration.rounds:
                writer.writerow(
                    {**record, "label": configuration.label, "rank": configuration.rank}
                    | {"verdict": configuration.verdict, "ratio_to_best": ratio}
                )


def metric_digits(metric: str) -> int:
    """Decimals a metric is shown with: latencies to the hundredth of a millisecond, rates whole."""
    return 2 if metric.endswith("_ms") else 0


def format_number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def format_ratio(configuration: Configuration) -> str:
    if configuration.ratio is None:
        return "-"
    if configuration.ratio_interval is None:
        return f"{configuration.ratio:.2f}x"
    low, high = configuration.ratio_interval
    return f"{configuration.ratio:.2f}x ({low:.2f}-{high:.2f})"


def measured_on(records: list[Record]) -> str:
    """Where the jobs ran, from their own records (a Ray sweep's nodes, not the machine writing the summary)."""
    machines = sorted({_machine(record["machine"]) for record in records if isinstance(record.get("machine"), dict)})
    if not machines:
        return "Measured on an unrecorded machine."
    if len(machines) == 1:
        return f"Measured on {machines[0]}."
    return (
        f"Measured on {len(machines)} different machines ({'; '.join(machines)}): the ranking compares the"
        " machines as well as the configurations."
    )


def _machine(fingerprint: dict[str, Any]) -> str:
    return (
        f"{fingerprint.get('cpu', '?')} ({fingerprint.get('cpus', '?')} usable CPUs), {fingerprint.get('os', '?')},"
        f" Python {fingerprint.get('python', '?')}"
    )


def workload_label(records: list[Record]) -> str:
    names = sorted({str(r.get("workload")) for r in records if r.get("workload")})
    return ", ".join(names) or "-"


def markdown(ranked: list[Configuration], *, sweep_dir: Path, metric: str) -> str:
    """The ranked table a person reads, with how to act on it."""
    bigger_is_better = METRICS[metric]
    direction = "higher" if bigger_is_better else "lower"
    records = [record for configuration in ranked for record in configuration.rounds]
    rounds = max((len(c.rounds) for c in ranked), default=0)
    digits = metric_digits(metric)
    lines = [
        f"# Benchmark sweep: {sweep_dir}",
        "",
        f"{len(ranked)} configurations x {rounds} round(s) ({len(records)} jobs),"
        f" workload **{workload_label(records)}**,"
        f" ranked by the median **{metric}** ({direction} is better). {measured_on(records)}",
        "",
        f"| # | verdict | server | loop | workers | overrides | n | {metric} | spread (min-max) | vs best (95% CI)"
        " | p99 ms | errors | server CPU % | peak RSS MiB | client saturated |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in ranked:
        if c.verdict == "failed":
            continue
        first, (low, high) = c.first, c.spread
        lines.append(
            f"| {c.rank} | {VERDICTS[c.verdict]} | {first['server']} {first['server_version']} | {first['loop']}"
            f" | {first['workers']} | `{c.label}` | {c.n} | {format_number(c.median, digits)}"
            f" | {format_number(low, digits)}-{format_number(high, digits)} | {format_ratio(c)}"
            f" | {format_number(c.median_of('p99_ms'), 2)} | {c.errors}"
            f" | {format_number(c.median_of('server_cpu_percent'))}"
            f" | {format_number(c.median_of('server_peak_rss_mib'))}"
            f" | {'**yes**' if c.client_saturated else 'no'} |"
        )
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed jobs:", "", "| job | overrides | reason |", "|---|---|---|"]
        lines += [f"| {r['job']} | `{r['label']}` | {r['reason']} |" for r in failed]
    lines += ["", *advice(ranked, bigger_is_better)]
    return "\n".join(lines) + "\n"


def advice(ranked: list[Configuration], bigger_is_better: bool) -> list[str]:
    advice = [
        "How to read it: each row is one configuration over its rounds (n clean ones); the figure is their median"
        " and *spread* their lowest and highest. *vs best* is the median's share of the best one, with the 95%"
        " interval of the ratio (of geometric means; the noise pooled over every row, the margin widened because"
        " the best was picked as the best); when the interval reaches 1.00 the data cannot tell the two apart and"
        " the row is a **tie**. A row as good as the best is called *worse* at most 2.5% of the time, at any"
        f" number of rounds. Among tied rows the winner is picked by {tie_break_rule(bigger_is_better)}."
        " Rows with errors rank below clean ones whatever their speed. A **yes** under *client saturated* means the"
        " load generator used (nearly) all the CPU its threads could, so that row measures the client as much as"
        " the server: pin the two sides apart (`bench.server_cpus=0 bench.client_cpus=1`) or use wrk.",
    ]
    if any(c.verdict == "n=1" for c in ranked):
        advice += [
            "",
            "**n=1: no confidence.** One round per configuration leaves nothing to measure the noise with, so it cannot"
            " separate a real difference from this"
            " machine's run-to-run noise (often 10-15%). Run the sweep again with `bench.rounds=3` (or more): the"
            " rounds are interleaved, and the summary then says which rows are ties.",
        ]
    if ranked and ranked[0].verdict in ("best", "winner"):
        winner = ranked[0]
        advice += [
            "",
            f"Winner: `{winner.label}` ({winner.first['server']}/{winner.first['loop']}). Its settings are in"
            " `best.yaml`: copy it to `conf/env/<name>.yaml` (or your own `--config-dir`'s `env/`) and serve with"
            " `python -m pyfly_hydra env=<name>`.",
        ]
    return advice


def _differences(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for key, value in config.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            nested = _differences(value, default)
            if nested:
                changed[key] = nested
        elif key not in NOT_ENV_KEYS and value != default:
            changed[key] = value
    return changed


def _option(winner: Record, group: str) -> str:
    """The config group option the job ran with (the resolved one when it said ``auto``), if it is a name."""
    chosen = winner["choices"][group]
    option = chosen if chosen not in (None, "auto") else winner[group]
    if not isinstance(option, str) or not OPTION_NAME.fullmatch(option):
        raise RecordError(f"the winner's {group} {one_line(repr(option))} is not a config name")
    return option


def env_body(winner: Record) -> dict[str, Any]:
    """A job's settings as an env file's body: its server and loop, and every non-default key.

    Only keys of the ``server`` schema are taken: ``_target_`` (what class to import) never comes from a record.
    """
    body: dict[str, Any] = {
        "defaults": [{"override /server": _option(winner, "server")}, {"override /loop": _option(winner, "loop")}]
    }
    if winner["app"] != "pyfly_hydra.demo:app":
        body["app"] = winner["app"]
    if winner["app_factory"]:
        body["app_factory"] = True
    defaults = asdict(ServerProperties())
    recorded = {key: value for key, value in winner["server_config"].items() if key in defaults}
    server_settings = _differences(recorded, defaults)
    if server_settings:
        body["server"] = server_settings
    return body


def winner_lines(ranked: list[Configuration], *, sweep_dir: Path, metric: str) -> list[str]:
    """Comment lines on the winner: what it is, its figures with their uncertainty, and any tie."""
    configuration = ranked[0]
    winner = configuration.first
    low, high = configuration.spread
    lines = [
        f"# Winner of the benchmark sweep in {sweep_dir}: {winner['server']} {winner['server_version']},"
        f" loop {winner['loop']}, workers {winner['workers']}, workload {winner.get('workload', '-')}:",
        f"#   median {metric} {configuration.median:,.2f} over n={configuration.n} round(s) (spread {low:,.2f}-"
        f"{high:,.2f}), p99 {configuration.median_of('p99_ms'):.2f} ms, measured with {winner['client']}."
        + ("  n=1: no confidence." if configuration.n < 2 else ""),
    ]
    tied = [c for c in ranked[1:] if c.verdict == "tie"]
    if tied:
        lines += [
            "# Tied with (the data cannot tell them apart): " + "; ".join(f"`{c.label}`" for c in tied),
            f"#   tie broken by: {tie_break_rule(METRICS[metric])}.",
        ]
    return lines


def best_yaml(ranked: list[Configuration], *, sweep_dir: Path, metric: str) -> str:
    """The winner as a ``# @package _global_`` env file: its server and loop, and every non-default key."""
    header = [
        "# @package _global_",
        *winner_lines(ranked, sweep_dir=sweep_dir, metric=metric),
        "# Promote it with its provenance (machine, versions): pyfly-hydra-promote <this sweep dir> <name>",
        "#   then serve with: python -m pyfly_hydra env=<name>",
    ]
    return comment_block(header) + env_yaml(env_body(ranked[0].first))


def write_chart(path: Path, ranked: list[Configuration], *, title: str, metric: str) -> bool:
    """``draw_chart`` into ``path``; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure = draw_chart(ranked, title=title, metric=metric)
    # The saved image grows to hold the labels, the legend and the title, however long (tight_layout gave up on
    # long labels: "Tight layout not applied", and cut them).
    figure.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.2)
    plt.close(figure)
    return True


def draw_chart(ranked: list[Configuration], *, title: str, metric: str) -> Figure:
    """Bars: each configuration's median ``metric``, whiskers its lowest and highest round (colour: server,
    hatching: asyncio loop), the verdict beside it, p99 marked. Needs matplotlib."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = list(reversed(ranked))  # best at the top
    # A tuner's labels run long (every drawn key): wrapped, never cut, and the rows as tall as their lines.
    labels = [chart_label(c) for c in rows]
    height = 1.2 + sum(0.3 + 0.16 * label.count("\n") for label in labels) + 0.25 * len(rows)
    figure, axis = plt.subplots(figsize=(11, height))
    values = [0.0 if math.isnan(c.median) else c.median for c in rows]
    whiskers = [
        [max(0.0, c.median - c.spread[0]) if c.values else 0.0 for c in rows],
        [max(0.0, c.spread[1] - c.median) if c.values else 0.0 for c in rows],
    ]
    bars = axis.barh(
        labels, values, xerr=whiskers, capsize=3, edgecolor="black",
        color=[SERVER_COLOURS.get(c.first["server"], OTHER_COLOUR) for c in rows],
    )  # fmt: skip
    for bar, configuration in zip(bars, rows, strict=True):
        if configuration.first["loop"] == "asyncio":
            bar.set_hatch("//")
        if configuration.values:
            text = f"  {configuration.median:,.0f} (n={configuration.n}) {VERDICTS[configuration.verdict]}"
        else:
            text = f"  failed: {one_line(str(configuration.first.get('reason')))[:70]}"
        top = max(values[rows.index(configuration)], configuration.spread[1] if configuration.values else 0.0)
        axis.text(top, bar.get_y() + bar.get_height() / 2, text.replace("**", ""), va="center", fontsize=8)
    direction = "higher" if METRICS[metric] else "lower"
    axis.set_xlabel(f"median {metric} ({direction} is better); whiskers: lowest and highest round")
    axis.set_xlim(0, max([*values, *(c.spread[1] for c in rows if c.values), 1]) * 1.45)
    if metric != "p99_ms":
        latency = axis.twiny()
        points = [(i, c.median_of("p99_ms")) for i, c in enumerate(rows) if c.values]
        if points:
            latency.plot([p for _, p in points], [i for i, _ in points], "D", color="#d62828")
            latency.set_xlim(0, max(p for _, p in points) * 3)  # the diamonds in the bars, clear of the labels
        latency.set_xlabel("median p99 latency, ms (red diamonds; lower is better)", color="#d62828")
    ran = {c.first["server"] for c in rows}
    legend = [Patch(facecolor=colour, edgecolor="black", label=s) for s, colour in SERVER_COLOURS.items() if s in ran]
    if ran - SERVER_COLOURS.keys():  # a user's own server adapter
        legend.append(Patch(facecolor=OTHER_COLOUR, edgecolor="black", label="other"))
    if any(c.first["loop"] == "asyncio" for c in rows):
        legend.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="asyncio loop"))
    # Beside the bars, not over the figures written at their ends.
    axis.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    axis.tick_params(axis="y", labelsize=8)
    axis.set_title(one_line(title), fontsize=10, pad=28)
    return figure


CHART_LABEL_WIDTH = 60  # characters per line of a bar's label


def chart_label(configuration: Configuration) -> str:
    """A bar's label: server/loop xworkers, then the configuration's overrides wrapped at spaces."""
    first = configuration.first
    text = one_line(f"{first['server']}/{first['loop']} x{first['workers']}  ({configuration.label})")
    return "\n".join(textwrap.wrap(text, CHART_LABEL_WIDTH, break_long_words=True, break_on_hyphens=False))


def write_ladder(path: Path, ranked: list[Configuration], *, title: str) -> bool:
    """Throughput and p99 against concurrency, one line per server configuration (a ``bench.connections``
    sweep, e.g. ``sweep=ladder``); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        return False
    series: dict[str, list[Configuration]] = {}
    for configuration in ranked:
        if configuration.values:
            series.setdefault(configuration.first["label"], []).append(configuration)
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in series.items():
        points.sort(key=lambda c: c.first["connections"])
        connections = [c.first["connections"] for c in points]
        throughput.plot(connections, [c.median_of("rps") for c in points], "o-", label=label)
        latency.plot(connections, [c.median_of("p99_ms") for c in points], "o-", label=label)
    for axis, name in ((throughput, "median requests per second"), (latency, "median p99 latency, ms")):
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.set_xlabel("concurrent connections (bench.connections)")
        axis.set_ylabel(name)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    throughput.legend(fontsize=8)
    figure.suptitle(one_line(title), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
