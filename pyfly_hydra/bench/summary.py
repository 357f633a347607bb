"""After a ``-m mode=bench`` sweep: rank the jobs and write summary.{csv,md,png} and best.yaml."""

from __future__ import annotations

import csv
import json
import logging
import math
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pyfly_hydra.bench.task import METRICS, RECORD_NAME
from pyfly_hydra.config import ServerProperties
from pyfly_hydra.cpus import usable_cpus

logger = logging.getLogger("pyfly_hydra")

Record = dict[str, Any]
CSV_COLUMNS = (
    "rank", "job", "label", "status", "reason", "server", "server_version", "loop", "workers", "http", "client",
    "connections", "duration", "requests", "errors", "rps", "ratio_to_best", "p50_ms", "p90_ms", "p99_ms",
    "server_cpu_percent", "server_peak_rss_mib", "client_cpu_cores", "client_saturated",
)  # fmt: skip
NOT_ENV_KEYS = ("host", "port")  # a benchmark always serves on 127.0.0.1 and a free port


def load_records(sweep_dir: Path) -> list[Record]:
    """Every job's bench.json under ``sweep_dir``, in job order."""
    records = []
    for path in sweep_dir.glob(f"*/{RECORD_NAME}"):
        record = json.loads(path.read_text())
        record.setdefault("job", path.parent.name)
        records.append(record)
    return sorted(records, key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else math.inf)


def rank(records: list[Record], metric: str) -> list[Record]:
    """Clean runs by ``metric`` (best first), then runs with errors, then failed jobs; adds rank and ratio."""
    bigger_is_better = METRICS[metric]
    ok = [r for r in records if r["status"] == "ok"]

    def by_metric(rows: list[Record]) -> list[Record]:
        return sorted(rows, key=lambda r: r[metric], reverse=bigger_is_better)

    ranked = by_metric([r for r in ok if r["errors"] == 0]) + by_metric([r for r in ok if r["errors"] > 0])
    ranked += [r for r in records if r["status"] != "ok"]
    best = ranked[0][metric] if ranked and ranked[0]["status"] == "ok" else None
    for position, record in enumerate(ranked, start=1):
        record["rank"] = position
        value = record.get(metric)
        if best and value and record["status"] == "ok":
            record["ratio_to_best"] = round(value / best if bigger_is_better else best / value, 3)
        else:
            record["ratio_to_best"] = None
    return ranked


def write_csv(path: Path, ranked: list[Record]) -> None:
    """One row per job, ranked."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ranked)


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def markdown(ranked: list[Record], *, sweep_dir: Path, metric: str) -> str:
    """The ranked table a person reads, with how to act on it."""
    direction = "higher" if METRICS[metric] else "lower"
    machine = (
        f"{platform.system()} {platform.machine()}, {usable_cpus()} usable CPUs, Python {platform.python_version()}"
    )
    lines = [
        f"# Benchmark sweep: {sweep_dir}",
        "",
        f"{len(ranked)} jobs ranked by **{metric}** ({direction} is better) on {machine}.",
        "",
        "| # | server | loop | workers | overrides | client | rps | vs best | p50 ms | p99 ms | errors"
        " | server CPU % | peak RSS MiB | client saturated |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ranked:
        if r["status"] != "ok":
            continue
        ratio = f"{r['ratio_to_best']:.2f}x" if r["ratio_to_best"] is not None else "-"
        lines.append(
            f"| {r['rank']} | {r['server']} {r['server_version']} | {r['loop']} | {r['workers']} | `{r['label']}`"
            f" | {r['client']} | {_number(r['rps'])} | {ratio} | {_number(r['p50_ms'], 2)} | {_number(r['p99_ms'], 2)}"
            f" | {r['errors']} | {_number(r['server_cpu_percent'])} | {_number(r['server_peak_rss_mib'])}"
            f" | {'**yes**' if r['client_saturated'] else 'no'} |"
        )
    failed = [r for r in ranked if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed jobs:", "", "| job | overrides | reason |", "|---|---|---|"]
        lines += [f"| {r['job']} | `{r['label']}` | {r['reason']} |" for r in failed]
    lines += ["", *_advice(ranked)]
    return "\n".join(lines) + "\n"


def _advice(ranked: list[Record]) -> list[str]:
    advice = [
        "How to read it: *vs best* is each job's share of the winner's figure; runs with errors rank below clean"
        " ones whatever their speed. A **yes** under *client saturated* means the load generator used (nearly) all"
        " the CPU its threads could, so that row measures the client as much as the server: pin the two sides"
        " apart (`bench.server_cpus=0 bench.client_cpus=1`) or use wrk.",
    ]
    if ranked and ranked[0]["status"] == "ok":
        advice += [
            "",
            f"Winner: `{ranked[0]['label']}` ({ranked[0]['server']}/{ranked[0]['loop']}). Its settings are in"
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


def best_yaml(winner: Record, *, sweep_dir: Path) -> str:
    """The winner as a ``# @package _global_`` env file: its server and loop, and every non-default key."""
    server = winner["choices"]["server"] if winner["choices"]["server"] not in (None, "auto") else winner["server"]
    loop = winner["choices"]["loop"] if winner["choices"]["loop"] not in (None, "auto") else winner["loop"]
    body: dict[str, Any] = {"defaults": [{"override /server": server}, {"override /loop": loop}]}
    if winner["app"] != "pyfly_hydra.demo:app":
        body["app"] = winner["app"]
    if winner["app_factory"]:
        body["app_factory"] = True
    server_settings = _differences(winner["server_config"], asdict(ServerProperties()))
    if server_settings:
        body["server"] = server_settings
    header = [
        "# @package _global_",
        f"# Winner of the benchmark sweep in {sweep_dir}: {winner['server']} {winner['server_version']},"
        f" loop {winner['loop']}, workers {winner['workers']}:",
        f"#   {winner['rps']:,.0f} rps, p50 {winner['p50_ms']:.2f} ms, p99 {winner['p99_ms']:.2f} ms,"
        f" {winner['errors']} errors, measured with {winner['client']}.",
        "# Commit it as conf/env/<name>.yaml (or <your --config-dir>/env/<name>.yaml) and serve with:",
        "#   python -m pyfly_hydra env=<name>",
    ]
    return "\n".join(header) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body))


def write_chart(path: Path, ranked: list[Record], *, title: str) -> bool:
    """A bar chart of rps per job (colour: server, hatching: asyncio loop) with p99 marked; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return False
    rows = list(reversed(ranked))  # best at the top
    colours = {"granian": "#2a9d8f", "uvicorn": "#e9c46a", "hypercorn": "#e76f51"}
    figure, axis = plt.subplots(figsize=(11, 1.2 + 0.55 * len(rows)))
    labels = [f"{r['server']}/{r['loop']} x{r['workers']}  ({r['label']})" for r in rows]
    values = [r["rps"] if r["status"] == "ok" else 0 for r in rows]
    bars = axis.barh(labels, values, color=[colours.get(r["server"], "#8d99ae") for r in rows], edgecolor="black")
    for bar, record in zip(bars, rows, strict=True):
        if record["loop"] == "asyncio":
            bar.set_hatch("//")
        text = f" {record['rps']:,.0f} rps" if record["status"] == "ok" else f" failed: {record['reason'][:70]}"
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
    axis.set_xlabel("requests per second (higher is better)")
    axis.set_xlim(0, max([*values, 1]) * 1.35)
    latency = axis.twiny()
    ok_rows = [(i, r["p99_ms"]) for i, r in enumerate(rows) if r["status"] == "ok"]
    if ok_rows:
        latency.plot([p for _, p in ok_rows], [i for i, _ in ok_rows], "D", color="#d62828", label="p99 latency")
        latency.set_xlim(0, max(p for _, p in ok_rows) * 1.35)
    latency.set_xlabel("p99 latency, ms (red diamonds; lower is better)", color="#d62828")
    legend = [Patch(facecolor=c, edgecolor="black", label=s) for s, c in colours.items()]
    legend.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="asyncio loop"))
    axis.legend(handles=legend, loc="lower right", fontsize=8)
    axis.set_title(title, fontsize=10, pad=28)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def write_summary(sweep_dir: Path, records: list[Record]) -> list[Path]:
    """Write every summary file into ``sweep_dir``; return the paths written."""
    metric = next((r["metric"] for r in records if r.get("metric")), "rps")
    ranked = rank(records, metric)
    written = [sweep_dir / "summary.csv", sweep_dir / "summary.md"]
    write_csv(written[0], ranked)
    written[1].write_text(markdown(ranked, sweep_dir=sweep_dir, metric=metric))
    if write_chart(sweep_dir / "summary.png", ranked, title=f"pyfly-hydra benchmark sweep: {sweep_dir}"):
        written.append(sweep_dir / "summary.png")
    else:
        logger.warning("summary.png skipped: matplotlib is not installed (pip install 'pyfly-hydra[bench]')")
    if ranked and ranked[0]["status"] == "ok":
        (sweep_dir / "best.yaml").write_text(best_yaml(ranked[0], sweep_dir=sweep_dir))
        written.append(sweep_dir / "best.yaml")
    return written


class BenchSummaryCallback(Callback):
    """Hydra callback (configured in ``conf/mode/bench.yaml``): summarises a finished bench sweep."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write the summary files into the sweep dir and print the ranked table."""
        sweep_dir = Path(config.hydra.sweep.dir)
        records = load_records(sweep_dir)
        if not records:
            return
        written = write_summary(sweep_dir, records)
        print((sweep_dir / "summary.md").read_text())
        failed = sum(1 for r in records if r["status"] != "ok")
        if failed:
            logger.warning("%d of %d jobs failed; their reasons are in summary.md", failed, len(records))
        logger.info("sweep summary written: %s", ", ".join(str(p) for p in written))
