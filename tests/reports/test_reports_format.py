"""Rendering: terminal tables, spreadsheet-safe CSV, and a self-contained HTML page with SVG charts."""

from __future__ import annotations

import re

from sluicegate_reports.formats import (
    Chart,
    Series,
    Table,
    render_csv,
    render_html,
    render_svg,
    render_text,
)

TABLE = Table(
    "Gaps",
    ("DAY", "MODEL", "GAP_USD"),
    (("2026-03-02", "gpt-4o", "0.0000"), ("2026-03-03", "=HYPERLINK(1)", "-0.3700")),
    frozenset({2}),
    frozenset({1}),
)


def test_terminal_tables_align_numbers_right_and_mark_rows() -> None:
    lines = render_text([TABLE], ["a note"]).splitlines()
    assert lines[0] == "Gaps"
    assert lines[2].endswith(" 0.0000") and lines[3].endswith("-0.3700")
    assert lines[3].startswith("!") and not lines[2].startswith("!")
    assert lines[-1] == "a note"


def test_csv_cells_that_look_like_formulas_are_defused_but_negative_numbers_are_kept() -> None:
    text = render_csv(TABLE)
    assert text.splitlines()[0] == "DAY,MODEL,GAP_USD"
    assert "'=HYPERLINK(1)" in text
    assert text.splitlines()[2].endswith(",-0.3700")


def test_the_html_page_is_self_contained_and_escapes_what_it_shows() -> None:
    chart = Chart("stacked", "Spend <by team>", ("d1", "d2"), (Series("a&b", (1.0, 2.0)),))
    page = render_html("Title", "sub", [("Saved", "$1", "good")], [chart], [TABLE], "footer")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert re.findall(r"(?:src|href)=", page) == []
    assert re.findall(r"https?://[^\"'\s]*", page) == ["http://www.w3.org/2000/svg"]  # the SVG namespace only
    assert "Spend &lt;by team&gt;" in page and "a&amp;b" in page and "=HYPERLINK(1)" in page
    assert '<tr class="bad">' in page


def test_stacked_bars_are_as_tall_as_their_values() -> None:
    svg = render_svg(Chart("stacked", "t", ("d1",), (Series("a", (1.0,)), Series("b", (3.0,)))))
    heights = [
        float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)" fill="#(?:4e79a7|f28e2b)"><title>', svg)
    ]
    assert len(heights) == 2 and abs(heights[1] / heights[0] - 3.0) < 0.01


def test_a_diverging_chart_paints_flagged_gaps_red_and_others_grey() -> None:
    svg = render_svg(Chart("diverging", "gaps", ("a", "b"), (Series("gap", (0.37, -0.05)),), frozenset({0})))
    fills = re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"', svg)
    assert fills == ["#d62728", "#8c9aa8"]


def test_a_line_chart_draws_one_polyline_per_series_with_tooltips() -> None:
    chart = Chart("line", "t", ("w1", "w2", "w3"), (Series("actual", (1, 2, 3)), Series("asked", (2, 3, 4))))
    svg = render_svg(chart)
    assert svg.count("<polyline") == 2
    assert "<title>w2 · asked: $3.00</title>" in svg


def test_an_empty_chart_still_renders_axes() -> None:
    svg = render_svg(Chart("grouped", "nothing yet", (), ()))
    assert svg.startswith("<svg") and "$0" in svg
