"""Report rendering: terminal tables, CSV, JSON, and a self-contained HTML page with inline SVG charts. Pure.

The HTML loads nothing: no script, no stylesheet, font or image from anywhere; every chart is SVG
drawn here. Strings go in already formatted; this module knows no ledger or export.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ChartKind = Literal["stacked", "grouped", "line", "diverging"]
PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_W, _H = 1080, 330
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 16, 44, 36


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of formatted cells. ``numeric``: right-aligned columns; ``marked``: rows to highlight."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: frozenset[int] = frozenset()
    marked: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: ``categories`` along x, one value per category in each series (USD)."""

    kind: ChartKind
    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    marked: frozenset[int] = frozenset()  # diverging: categories drawn as alarms
    caption: str = ""


# -- text, CSV, JSON ----------------------------------------------------------------------------


def render_text(tables: Sequence[Table], notes: Sequence[str] = ()) -> str:
    """Aligned plain-text tables, each under its title, then the notes."""
    out: list[str] = []
    for table in tables:
        if out:
            out.append("")
        out.append(table.title)
        grid = [table.columns, *table.rows]
        widths = [max(len(row[i]) for row in grid) for i in range(len(table.columns))]
        for number, row in enumerate(grid):
            cells = [
                cell.rjust(width) if i in table.numeric else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            mark = "!" if number - 1 in table.marked else " "
            out.append((mark + " " + "  ".join(cells)).rstrip())
        if not table.rows:
            out.append("  (nothing to report)")
    if notes:
        out.append("")
        out.extend(notes)
    return "\n".join(out) + "\n"


def _safe_cell(cell: str) -> str:
    """No formulas in spreadsheets: a text cell starting with = + - @ gets a leading quote."""
    if cell.startswith(_FORMULA_START):
        try:
            float(cell.replace(",", ""))
        except ValueError:
            return "'" + cell
    return cell


def render_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([_safe_cell(cell) for cell in row] for row in table.rows)
    return buffer.getvalue()


def render_json(payload: object) -> str:
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


# -- SVG charts ---------------------------------------------------------------------------------


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def _axis(low: float, high: float) -> tuple[float, float, list[float]]:
    """A rounded value range containing [low, high] and its tick values."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low <= 0:
        high = 1.0
    step = _nice_step(high - low, 5)
    start, stop = math.floor(low / step) * step, math.ceil(high / step) * step
    ticks = [start + i * step for i in range(round((stop - start) / step) + 1)]
    return start, stop, ticks


def _money_label(value: float) -> str:
    if abs(value) >= 1000:
        return f"${value / 1000:,.1f}k"
    if abs(value) >= 10 or value == 0:
        return f"${value:,.0f}"
    return f"${value:,.2f}"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _frame(chart: Chart, low: float, high: float) -> tuple[list[str], float, float, float, int]:
    """The axes, grid and labels; returns (svg parts, y of zero, pixels per USD, band width, height)."""
    count = max(len(chart.categories), 1)
    band = (_W - _LEFT - _RIGHT) / count
    longest = min(max((len(c) for c in chart.categories), default=0), 24)
    slanted = longest * 6.6 > band * 0.95
    margin = (
        round(24 + longest * 3.8) if slanted else _BOTTOM
    )  # a label slanted by 35° drops 0.57 x its width
    height = _H - _BOTTOM + margin
    bottom, top = height - margin, _TOP
    start, stop, ticks = _axis(low, high)
    scale = (bottom - top) / (stop - start)
    zero = bottom - (0 - start) * scale
    parts = [f'<text x="{_LEFT}" y="20" class="t">{_esc(chart.title)}</text>']
    for tick in ticks:
        y = bottom - (tick - start) * scale
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="yl">{_money_label(tick)}</text>')
    parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}" class="z"/>')
    every = max(1, math.ceil(count / 24))
    for i, name in enumerate(chart.categories):
        if i % every:
            continue
        x, y = _LEFT + (i + 0.5) * band, bottom + 16
        label = _esc(name if len(name) <= 24 else name[:23] + "…")
        if slanted:
            parts.append(
                f'<text x="{x:.1f}" y="{y}" class="xl" transform="rotate(-35 {x:.1f} {y})">{label}</text>'
            )
        else:
            parts.append(f'<text x="{x:.1f}" y="{y}" class="xc">{label}</text>')
    return parts, zero, scale, band, height


def _legend(chart: Chart) -> list[str]:
    if chart.kind == "diverging":
        return []
    parts, x = [], float(_LEFT)
    for number, series in enumerate(chart.series):
        color = PALETTE[number % len(PALETTE)]
        label = series.name if len(series.name) <= 28 else series.name[:27] + "…"
        parts.append(f'<rect x="{x:.1f}" y="28" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="37" class="lg">{_esc(label)}</text>')
        x += 26 + 7 * len(label)
        if x > _W - 160:
            break
    return parts


def _bar(x: float, y0: float, y1: float, width: float, color: str, tip: str, extra: str = "") -> str:
    top, height = min(y0, y1), abs(y1 - y0)
    return (
        f'<rect x="{x:.1f}" y="{top:.1f}" width="{max(width, 1):.1f}" height="{height:.1f}" '
        f'fill="{color}"{extra}><title>{_esc(tip)}</title></rect>'
    )


def render_svg(chart: Chart) -> str:
    """One chart as an inline ``<svg>`` element (values in USD)."""
    values = [v for s in chart.series for v in s.values]
    if chart.kind == "stacked":
        totals = [sum(max(s.values[i], 0) for s in chart.series) for i in range(len(chart.categories))]
        low, high = 0.0, max(totals, default=0.0)
    else:
        low, high = min(values, default=0.0), max(values, default=0.0)
    parts, zero, scale, band, height = _frame(chart, low, high)
    parts += _legend(chart)
    if chart.kind == "stacked":
        for i, category in enumerate(chart.categories):
            base = zero
            for number, series in enumerate(chart.series):
                value = max(series.values[i], 0)
                if value:
                    top = base - value * scale
                    tip = f"{category} · {series.name}: ${value:,.2f}"
                    width = min(band * 0.7, 90.0)
                    x = _LEFT + (i + 0.5) * band - width / 2
                    parts.append(_bar(x, base, top, width, PALETTE[number % 10], tip))
                    base = top
    elif chart.kind in ("grouped", "diverging"):
        group = min(band * 0.8, 64.0 * len(chart.series))
        width = group / max(len(chart.series), 1)
        for number, series in enumerate(chart.series):
            for i, value in enumerate(series.values):
                x = _LEFT + (i + 0.5) * band - group / 2 + number * width
                color = PALETTE[number % 10]
                if chart.kind == "diverging":
                    color = "#d62728" if i in chart.marked else "#8c9aa8"
                tip = f"{chart.categories[i]} · {series.name}: ${value:,.2f}"
                parts.append(_bar(x, zero, zero - value * scale, width * 0.92, color, tip))
    else:
        for number, series in enumerate(chart.series):
            color = PALETTE[number % 10]
            points = [(_LEFT + (i + 0.5) * band, zero - v * scale) for i, v in enumerate(series.values)]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"/>')
            for (x, y), category, value in zip(points, chart.categories, series.values, strict=True):
                tip = f"{category} · {series.name}: ${value:,.2f}"
                dot = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
                parts.append(f"{dot}<title>{_esc(tip)}</title></circle>")
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" width="100%" role="img" '
        f'aria-label="{_esc(chart.title)}">\n{body}\n</svg>'
    )


# -- the page -----------------------------------------------------------------------------------

_CSS = " ".join(
    (
        'body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;',
        "background:#f5f6f8;color:#1f2933}",
        "header{background:#1f2933;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}",
        "header p{margin:4px 0 0;color:#cbd2d9;font-size:13px}main{padding:20px 32px 40px}",
        ".cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:18px}",
        ".card{background:#fff;border-radius:8px;padding:12px 16px;min-width:170px;",
        "box-shadow:0 1px 2px #0002}",
        ".card b{display:block;font-size:22px;margin-top:4px}.card span{font-size:12px;color:#52606d}",
        ".card.bad b{color:#c62828}.card.good b{color:#2e7d32}",
        "figure{background:#fff;border-radius:8px;margin:0 0 18px;padding:8px 12px;",
        "box-shadow:0 1px 2px #0002}",
        "figcaption{font-size:12px;color:#52606d;padding:0 4px 6px}",
        "svg .t{font-size:15px;font-weight:600;fill:#1f2933}svg .g{stroke:#e4e7eb}svg .z{stroke:#7b8794}",
        "svg text{font-size:11px;fill:#52606d}svg .yl{text-anchor:end}svg .xc{text-anchor:middle}",
        "svg .xl{text-anchor:end}svg .lg{font-size:12px;fill:#1f2933}",
        "section{background:#fff;border-radius:8px;margin:0 0 18px;padding:12px 16px;",
        "box-shadow:0 1px 2px #0002;overflow-x:auto}",
        "section h2{font-size:16px;margin:2px 0 10px}",
        "table{border-collapse:collapse;font-size:12.5px;width:100%}",
        "th{background:#eef1f4;text-align:left;padding:6px 8px;white-space:nowrap}",
        "td{padding:5px 8px;border-top:1px solid #e4e7eb}",
        "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}",
        "tr.bad td{background:#fdecea}footer{color:#7b8794;font-size:12px;padding:0 32px 24px}",
    )
)


def _html_table(table: Table) -> str:
    head = "".join(
        f'<th class="n">{_esc(c)}</th>' if i in table.numeric else f"<th>{_esc(c)}</th>"
        for i, c in enumerate(table.columns)
    )
    body = []
    for number, row in enumerate(table.rows):
        cells = "".join(
            f'<td class="n">{_esc(c)}</td>' if i in table.numeric else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f'<tr class="bad">{cells}</tr>' if number in table.marked else f"<tr>{cells}</tr>")
    rows = "\n".join(body) or f'<tr><td colspan="{len(table.columns)}">(nothing to report)</td></tr>'
    return (
        f"<section><h2>{_esc(table.title)}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>\n{rows}\n</tbody></table></section>"
    )


def render_html(
    title: str,
    subtitle: str,
    cards: Sequence[tuple[str, str, str]],
    charts: Sequence[Chart],
    tables: Sequence[Table],
    footer: str,
) -> str:
    """A whole page. ``cards``: (label, value, tone) with tone ``""``, ``good`` or ``bad``."""
    card_html = "".join(
        f'<div class="card {_esc(tone)}"><span>{_esc(label)}</span><b>{_esc(value)}</b></div>'
        for label, value, tone in cards
    )
    figures = "\n".join(
        f"<figure>{render_svg(chart)}"
        + (f"<figcaption>{_esc(chart.caption)}</figcaption>" if chart.caption else "")
        + "</figure>"
        for chart in charts
    )
    sections = "\n".join(_html_table(table) for table in tables)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<header><h1>{_esc(title)}</h1><p>{_esc(subtitle)}</p></header>\n<main>\n"
        f'<div class="cards">{card_html}</div>\n{figures}\n{sections}\n</main>\n'
        f"<footer>{_esc(footer)}</footer>\n</body></html>\n"
    )
