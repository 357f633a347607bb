"""A benchmark job's result as it travels back to the sweep: the metric, carrying the job's record.

On one machine a job's ``bench.json`` is already where the summary reads it. On a cluster whose nodes do not
share a filesystem it is on the node that ran the job; the record travels back inside the job's return value
and :func:`land_records` writes it where the driver's summary looks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn

RECORD_NAME = "bench.json"


class BenchOutcome(float):
    """``bench.metric`` (what a sweeper optimises) with the job's whole record attached."""

    record: dict[str, Any]

    def __new__(cls, value: float, record: dict[str, Any]) -> BenchOutcome:
        outcome = super().__new__(cls, value)
        outcome.record = record
        return outcome

    def __reduce__(self) -> tuple[type[BenchOutcome], tuple[float, dict[str, Any]]]:
        return (BenchOutcome, (float(self), self.record))


def write_record(job_dir: Path, record: dict[str, Any]) -> Path:
    """Write a job's record as ``<job_dir>/bench.json``; return its path."""
    path = job_dir / RECORD_NAME
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def job_output_dir(job_return: JobReturn) -> Path | None:
    """The job's output dir (``hydra.runtime.output_dir``; ``working_dir`` is the cwd it ran in)."""
    if job_return.hydra_cfg is None:
        return None
    return Path(job_return.hydra_cfg.hydra.runtime.output_dir)


def land_records(returns: Iterable[JobReturn]) -> list[Path]:
    """Write each returned record into its job dir on this machine where it is not there yet; return those."""
    landed = []
    for job_return in returns:
        outcome, job_dir = getattr(job_return, "_return_value", None), job_output_dir(job_return)
        if not isinstance(outcome, BenchOutcome) or job_dir is None:
            continue
        if not (job_dir / RECORD_NAME).exists():
            job_dir.mkdir(parents=True, exist_ok=True)
            landed.append(write_record(job_dir, outcome.record))
    return landed
