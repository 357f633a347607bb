"""summary.png on a tuner's long labels: nothing cut, no warning, the legend clear of the bars' figures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from pyfly_hydra.bench.report.summary import CHART_LABEL_WIDTH, draw_chart, write_chart
from pyfly_hydra.bench.report.uncertainty import rank_configurations

pytest.importorskip("matplotlib")


def _tuner_records() -> list[dict]:
    """Twelve trials as the tuner labels them: every drawn key in the label."""
    records = []
    for number in range(12):
        server = ("granian", "uvicorn", "hypercorn")[number % 3]
        loop = ("uvloop", "asyncio")[number % 2]
        label = (
            f"server={server} loop={loop} server.workers={1 + number % 4} server.backlog={128 * (1 + number)}"
            f" server.granian.runtime_threads={1 + number % 3} server.granian.runtime_mode=mt bench/workload=mixed"
        )
        for round_number, share in ((1, 1.0), (2, 1.03)):
            records.append({
                "label": label, "round": round_number, "status": "ok", "errors": 0,
                "rps": (9_000 + 500 * number) * share, "p99_ms": 3.0, "server_cpu_percent": 90.0,
                "server_peak_rss_mib": 60.0, "server": server, "server_version": "1", "loop": loop,
                "workers": 1 + number % 4,
            })  # fmt: skip
    return records


def test_long_labels_are_wrapped_and_the_legend_covers_no_figure(tmp_path: Path) -> None:
    ranked = rank_configurations(_tuner_records(), "rps", bigger_is_better=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Tight layout not applied" was one
        assert write_chart(tmp_path / "summary.png", ranked, title="tune", metric="rps")
        figure = draw_chart(ranked, title="tune", metric="rps")
        figure.canvas.draw()
    axis = figure.axes[0]
    labels = [label.get_text() for label in axis.get_yticklabels()]
    assert len(labels) == 12 and all(len(line) <= CHART_LABEL_WIDTH for label in labels for line in label.split("\n"))
    assert all("bench/workload=mixed" in label.replace("\n", " ") for label in labels)  # wrapped, not cut
    renderer = figure.canvas.get_renderer()
    legend = axis.get_legend().get_window_extent(renderer)
    figures = [text.get_window_extent(renderer) for text in axis.texts]
    assert figures and not any(legend.overlaps(box) for box in figures)
    assert (tmp_path / "summary.png").stat().st_size > 10_000
