"""summary.html: a sweep's ranked configurations as one self-contained page to open in any browser.

A table sortable by any column and an SVG bar chart drawn here (no matplotlib); the CSS and the script are
inline and the page's Content-Security-Policy lets it load nothing else. Every string from the sweep
(labels are command-line overrides, reasons are error messages) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

from pyfly_hydra.bench.metrics import METRICS
from pyfly_hydra.bench.report.summary import (
    OTHER_COLOUR,
    SERVER_COLOURS,
    VERDICTS,
    advice,
    format_number,
    format_ratio,
    measured_on,
    metric_digits,
)
from pyfly_hydra.bench.report.uncertainty import Configuration

MARKUP = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*([^*]+)\*")  # summary.md's code, bold and italics
TEXT_CLASSES = {"configuration": "label", "status": "status"}  # other text columns: "text", not wrapped
Cell = tuple[str, float | None]  # its HTML, and the number it sorts by (None: a text column)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #1d2430; }
h1 { font-size: 1.25em; word-break: break-all; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #d0d5dd; padding: 0.3em 0.55em; vertical-align: top; }
th { background: #f2f4f7; white-space: nowrap; }
th button { all: inherit; border: 0; padding: 0; cursor: pointer; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
td.number { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.text { white-space: nowrap; }
td.label { min-width: 16em; max-width: 32em; }
td.status { min-width: 20em; }
td.label, code { font-family: ui-monospace, monospace; font-size: 0.92em; }
tr.failed td { color: #9b2226; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2430; }
svg .failed { fill: #9b2226; }
svg .grid { stroke: #e4e7ec; }
svg .whisker { stroke: #1d2430; stroke-width: 1.5; }
"""

# Click a header: sort by it (numbers by their data-value, empty ones last; text alphabetically); again: reverse.
SCRIPT = """
for (const table of document.querySelectorAll("table.sortable")) {
  const headers = Array.from(table.tHead.rows[0].cells);
  const body = table.tBodies[0];
  const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  headers.forEach((header, column) => header.addEventListener("click", () => {
    const numeric = header.dataset.type === "number";
    const descending = header.getAttribute("aria-sort") === "ascending";
    const key = (row) => {
      const cell = row.cells[column];
      if (!numeric) return cell.textContent.trim() || null;
      const value = parseFloat(cell.dataset.value);
      return Number.isNaN(value) ? null : value;
    };
    const rows = Array.from(body.rows).map((row) => [key(row), row]);
    rows.sort(([a], [b]) => {
      if (a === null || b === null) return (a === null) - (b === null);
      const order = numeric ? a - b : collator.compare(a, b);
      return descending ? -order : order;
    });
    for (const other of headers) other.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    body.append(...rows.map(([, row]) => row));
  }));
}
"""


def write_html(path: Path, ranked: list[Configuration], *, title: str, metric: str) -> None:
    """Write the page: the title, the chart, one table row per configuration, and how to read it."""
    bigger_is_better = METRICS[metric]
    digits = metric_digits(metric)
    records = [record for configuration in ranked for record in configuration.rounds]
    jobs = len(records)
    rounds = max((len(c.rounds) for c in ranked), default=0)
    intro = (
        f"{len(ranked)} configurations x {rounds} round(s) ({jobs} jobs), ranked by the median **{metric}**"
        f" ({'higher' if bigger_is_better else 'lower'} is better). {measured_on(records)}"
        " Click a column's header to sort by it, again to reverse."
    )
    how_to_read = "\n".join(
        f"<p>{_inline(paragraph)}</p>" for paragraph in advice(ranked, bigger_is_better) if paragraph
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';\
 script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{_inline(intro)}</p>
<figure>
{_chart(ranked, metric, digits)}
</figure>
<div class="scroll">
{_table(ranked, metric, digits)}
</div>
{how_to_read}
<script>{SCRIPT}</script>
</body>
</html>
"""
    path.write_text(page, encoding="utf-8")  # as its <meta charset> says, whatever the locale


def _inline(text: str) -> str:
    """Escaped text with summary.md's inline markup (code, bold, italics) as HTML."""

    def tag(match: re.Match[str]) -> str:
        code, strong, emphasis = match.groups()
        if code is not None:
            return f"<code>{code}</code>"
        return f"<strong>{strong}</strong>" if strong is not None else f"<em>{emphasis}</em>"

    return MARKUP.sub(tag, html.escape(text))


def _figure(value: object) -> float | None:
    """A cell's sort value: the number, or None when it has none (missing, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return value


def _table(ranked: list[Configuration], metric: str, digits: int) -> str:
    columns = (
        ("#", "number", "rank"),
        ("verdict", "text", "against the best, from the 95% interval of the ratio"),
        ("server", "text", "server and version"),
        ("loop", "text", "event loop"),
        ("workers", "number", "server processes"),
        ("configuration", "text", "the overrides that make this configuration"),
        ("n", "number", "clean rounds"),
        (metric, "number", f"median {metric} over the clean rounds"),
        ("spread (min-max)", "number", "the lowest and highest round; sorts by their distance"),
        ("vs best (95% CI)", "number", "the median's share of the best one, with its 95% interval"),
        ("p50 ms", "number", "median p50 latency"),
        ("p99 ms", "number", "median p99 latency"),
        ("errors", "number", "failed requests, over every round that ran"),
        ("server CPU %", "number", "median server CPU"),
        ("peak RSS MiB", "number", "median peak resident memory of the server"),
        ("client saturated", "text", "yes: the load generator was the bottleneck"),
        ("status", "text", "ok, or why a round failed"),
    )
    head = "".join(
        f'<th scope="col" data-type="{kind}" title="{html.escape(hint)}"'
        + (' aria-sort="ascending"' if name == "#" else "")
        + f'><button type="button">{html.escape(name)}</button></th>'
        for name, kind, hint in columns
    )
    body = []
    for configuration in ranked:
        cells = "".join(
            f'<td class="number" data-value="{"" if value is None else repr(value)}">{text}</td>'
            if kind == "number"
            else f'<td class="{TEXT_CLASSES.get(name, "text")}">{text}</td>'
            for (name, kind, _), (text, value) in zip(columns, _cells(configuration, digits), strict=True)
        )
        failed = ' class="failed"' if configuration.verdict == "failed" else ""
        body.append(f'<tr data-rank="{configuration.rank}"{failed}>{cells}</tr>')
    rows = "\n".join(body)
    return f'<table class="sortable">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>'


def _cells(c: Configuration, digits: int) -> list[Cell]:
    """One configuration's cells, in the order of the table's columns (summary.md's, plus p50 and status)."""
    first, (low, high) = c.first, c.spread
    workers = first.get("workers", "-")
    server = " ".join(str(part) for part in (first.get("server"), first.get("server_version")) if part)
    problems = [f"failed (job {r.get('job')}): {r.get('reason')}" for r in c.rounds if r["status"] != "ok"]

    def number(value: float | None, places: int = 0) -> Cell:
        return format_number(value, places), _figure(value)

    return [
        number(c.rank),
        (_inline(VERDICTS[c.verdict]), None),
        (html.escape(server or "-"), None),
        (html.escape(str(first.get("loop") or "-")), None),
        (html.escape(str(workers)), _figure(workers)),
        (html.escape(c.label), None),
        number(c.n),
        number(c.median, digits),
        (f"{format_number(low, digits)}-{format_number(high, digits)}" if c.values else "-", _figure(high - low)),
        (format_ratio(c), _figure(c.ratio)),
        number(c.median_of("p50_ms"), 2),
        number(c.median_of("p99_ms"), 2),
        number(c.errors),
        number(c.median_of("server_cpu_percent")),
        number(c.median_of("server_peak_rss_mib")),
        ("<strong>yes</strong>" if c.client_saturated else "no", None),
        (html.escape("; ".join(problems) or "ok"), None),
    ]


def _ticks(top: float) -> list[float]:
    """0 and round steps (1, 2 or 5 times a power of ten) up to at least ``top``."""
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _chart(ranked: list[Configuration], metric: str, digits: int) -> str:
    """Bars: each configuration's median (colour: server; hatched: asyncio loop), whiskers from its lowest to
    its highest round, the figure and verdict beside it; a failed configuration is a line with its reason."""
    label_width, bar_width, value_width, row, top = 360, 430, 230, 28, 12
    ticks = _ticks(max((c.spread[1] for c in ranked if c.values), default=0.0) or 1.0)
    scale = bar_width / ticks[-1]
    bottom = top + row * len(ranked)
    height = bottom + 64
    direction = "higher" if METRICS[metric] else "lower"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_width + value_width}" height="{height}"'
        f' role="img" aria-label="median {html.escape(metric)} per configuration">',
        '<defs><pattern id="asyncio" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#1d2430" stroke-width="1.2"/>'
        "</pattern></defs>",
    ]
    for tick in ticks:
        x = label_width + tick * scale
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{tick:,.{digits}f}</text>')
    for index, c in enumerate(ranked):
        y = top + index * row
        middle = y + row / 2
        first = c.first
        name = f"{first.get('server')}/{first.get('loop')} x{first.get('workers')}  ({c.label})"
        short = name if len(name) <= 52 else name[:51] + "\u2026"
        parts.append(f'<g class="row" data-rank="{c.rank}" data-label="{html.escape(c.label)}">')
        parts.append(
            f'<text x="{label_width - 8}" y="{middle + 4:.1f}" text-anchor="end">'
            f"<title>{html.escape(name)}</title>{html.escape(short)}</text>"
        )
        if not c.values:
            reason = str(first.get("reason"))
            reason = reason if len(reason) <= 80 else reason[:79] + "\u2026"
            parts.append(
                f'<text class="failed" x="{label_width + 4}" y="{middle + 4:.1f}">failed: {html.escape(reason)}</text>'
            )
            parts.append("</g>")
            continue
        low, high = c.spread
        length = c.median * scale
        fill = SERVER_COLOURS.get(str(first.get("server")), OTHER_COLOUR)
        box = f'x="{label_width}" y="{y + 4}" width="{length:.1f}" height="{row - 8}"'
        summary = f"{c.median:,.{digits}f} (n={c.n}) {VERDICTS[c.verdict].replace('**', '')}"
        parts.append(
            f'<rect class="bar" {box} fill="{fill}" stroke="#1d2430" data-value="{c.median!r}">'
            f"<title>{html.escape(c.label)}: median {html.escape(metric)} {summary}, spread"
            f" {format_number(low, digits)}-{format_number(high, digits)}</title></rect>"
        )
        if first.get("loop") == "asyncio":
            parts.append(f'<rect class="hatch" {box} fill="url(#asyncio)" pointer-events="none"/>')
        if high > low:
            x1, x2 = label_width + low * scale, label_width + high * scale
            parts.append(
                f'<path class="whisker" d="M{x1:.1f} {middle:.1f}H{x2:.1f}M{x1:.1f} {middle - 5:.1f}v10'
                f'M{x2:.1f} {middle - 5:.1f}v10" fill="none"/>'
            )
        after = label_width + max(length, high * scale) + 6
        parts.append(f'<text x="{after:.1f}" y="{middle + 4:.1f}">{html.escape(summary)}</text>')
        parts.append("</g>")
    caption = f"median {metric} ({direction} is better); whiskers: lowest and highest round; hatched: asyncio loop"
    parts.append(f'<text x="{label_width}" y="{bottom + 36}">{html.escape(caption)}</text>')
    x = label_width
    for server in sorted({str(c.first.get("server")) for c in ranked if c.values}):
        colour = SERVER_COLOURS.get(server, OTHER_COLOUR)
        parts.append(f'<rect class="legend" x="{x}" y="{bottom + 46}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{bottom + 55}">{html.escape(server)}</text>')
        x += 24 + 7 * len(server)
    parts.append("</svg>")
    return "\n".join(parts)
