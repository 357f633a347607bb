"""``pyfly-hydra-promote SWEEP_DIR NAME``: a sweep's winner as a committed environment, with its provenance.

Writes ``<config dir>/env/NAME.yaml``: the winner's settings (as ``best.yaml``), a header a reviewer reads
(the sweep, the date, the workload, the metric with its uncertainty, the machine and the versions), and a
``provenance`` key the runner reads: serving the environment on a machine whose fingerprint differs from
the recorded one prints one notice line. Like best.yaml, the file is data: its body comes from a YAML
emitter and each header line is one printable line (``pyfly_hydra.bench.report.summary.comment_block``), so no
recorded string can add a key to it.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from pyfly_hydra.bench.report.summary import (
    RecordError,
    comment_block,
    env_body,
    env_yaml,
    load_records,
    one_line,
    rank,
    sweep_metric,
    winner_lines,
)
from pyfly_hydra.errors import PyflyHydraError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # matched whole (fullmatch): "name\n" is no name


class PromoteError(PyflyHydraError):
    """The sweep cannot be promoted as asked."""


def promote(sweep_dir: Path, name: str, *, config_dir: Path, force: bool = False) -> Path:
    """Write the sweep's winner to ``config_dir/env/name.yaml``; return its path."""
    if not NAME.fullmatch(name):
        raise PromoteError(f"NAME={name!r}: use letters, digits, - and _ (it becomes env=NAME)")
    records = load_records(sweep_dir)
    if not records:
        raise PromoteError(f"SWEEP_DIR={sweep_dir}: no */bench.json in it; give a `-m mode=bench` sweep's directory")
    metric = sweep_metric(records)
    ranked = rank(records, metric)
    if ranked[0].verdict not in ("best", "winner"):
        raise PromoteError(f"SWEEP_DIR={sweep_dir}: no job ran cleanly, so there is no winner to promote")
    target = config_dir / "env" / f"{name}.yaml"
    if target.exists() and not force:
        raise PromoteError(f"{target} exists; pass --force to replace it")
    winner = ranked[0]
    recorded_machine = winner.first.get("machine")
    machine: dict[str, str] | None = recorded_machine if isinstance(recorded_machine, dict) else None
    provenance: dict[str, Any] = {
        "sweep": str(sweep_dir.resolve()),
        "promoted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "configuration": winner.label,
        "workload": winner.first.get("workload"),
        "metric": metric,
        "median": round(winner.median, 3),
        "rounds": winner.n,
        "spread": [round(value, 3) for value in winner.spread],
        "tied_with": [c.label for c in ranked[1:] if c.verdict == "tie"],
        "machine": machine,
    }
    header = [
        "# @package _global_",
        f"# Promoted by pyfly-hydra-promote on {provenance['promoted']}.",
        *winner_lines(ranked, sweep_dir=sweep_dir.resolve(), metric=metric),
        "# Measured on: "
        + (", ".join(f"{key} {value}" for key, value in machine.items()) if machine else "(not recorded)"),
        "# Serving it on a machine unlike that one prints a notice (the provenance key below).",
        f"#   python -m pyfly_hydra --config-dir {config_dir} env={name}",
    ]
    try:
        body = {**env_body(winner.first), "provenance": provenance}
    except RecordError as error:
        raise PromoteError(f"SWEEP_DIR={sweep_dir}: {error}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(comment_block(header) + env_yaml(body), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    """The command line: one line on success (the file written), one ``error:`` line and exit 2 otherwise."""
    parser = argparse.ArgumentParser(prog="pyfly-hydra-promote", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a `-m mode=bench` sweep's directory")
    parser.add_argument("name", help="the environment's name: serve it with env=NAME")
    parser.add_argument("--config-dir", type=Path, default=Path("conf"), help="where env/NAME.yaml goes (conf)")
    parser.add_argument("--force", action="store_true", help="replace an existing env/NAME.yaml")
    args = parser.parse_args(argv)
    try:
        path = promote(args.sweep_dir, args.name, config_dir=args.config_dir, force=args.force)
    except PromoteError as error:
        print(f"pyfly-hydra-promote: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    print(f"wrote {path}; serve it with: python -m pyfly_hydra --config-dir {args.config_dir} env={args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
