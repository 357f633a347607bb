"""After a ``-m mode=bench`` sweep: the Hydra callback that writes every report of the sweep directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pyfly_hydra.bench.report.html import write_html
from pyfly_hydra.bench.report.summary import (
    RecordError,
    best_yaml,
    load_records,
    markdown,
    rank,
    sweep_metric,
    workload_label,
    write_chart,
    write_csv,
    write_ladder,
)
from pyfly_hydra.bench.report.uncertainty import Record, varied_bench_keys

logger = logging.getLogger("pyfly_hydra")


def write_summary(sweep_dir: Path, records: list[Record]) -> list[Path]:
    """Write every summary file into ``sweep_dir``; return the paths written."""
    metric = sweep_metric(records)
    ranked = rank(records, metric)
    written = [sweep_dir / "summary.csv", sweep_dir / "summary.md"]
    write_csv(written[0], ranked)
    written[1].write_text(markdown(ranked, sweep_dir=sweep_dir, metric=metric))
    title = f"pyfly-hydra sweep, workload {workload_label(records)}: {sweep_dir}"
    write_html(sweep_dir / "summary.html", ranked, title=title, metric=metric)
    written.append(sweep_dir / "summary.html")
    if write_chart(sweep_dir / "summary.png", ranked, title=title, metric=metric):
        written.append(sweep_dir / "summary.png")
    else:
        logger.warning("summary.png skipped: matplotlib is not installed (pip install 'pyfly-hydra[bench]')")
    if "bench.connections" in varied_bench_keys(records) and write_ladder(
        sweep_dir / "ladder.png", ranked, title=f"concurrency ladder, workload {workload_label(records)}: {sweep_dir}"
    ):
        written.append(sweep_dir / "ladder.png")
    if ranked and ranked[0].verdict in ("best", "winner"):
        try:
            best = best_yaml(ranked, sweep_dir=sweep_dir, metric=metric)
        except RecordError as error:
            logger.warning("best.yaml skipped: %s", error)
        else:
            (sweep_dir / "best.yaml").write_text(best, encoding="utf-8")
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
