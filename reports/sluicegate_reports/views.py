"""Report views: a savings report or a reconciliation as tables, notes, charts, JSON, HTML and metrics. Pure.

Formats what ``savings`` and ``invoices`` computed for ``formats`` to render; reads and writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sluicegate_contract.money import MICRO_USD, usd

from .formats import Chart, Series, Table, render_html
from .invoices import GapRow, Reconciliation
from .savings import SavingsReport, SavingsRow

_TOP_GROUPS = 8


def money(micro: int) -> str:
    return f"{Decimal(micro) / MICRO_USD:,.4f}"


def pct(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else "-"


# -- savings ------------------------------------------------------------------------------------

SAVINGS_COLUMNS = (
    "WINDOW", "GROUP", "REQUESTS", "DOWNGRADE", "LIGHT_ONLY", "AUTO", "ACTUAL_USD", "ASKED_FOR_USD",
    "SAVED_USD", "SAVED_PCT", "PREMIUM_USD", "SAVED_VS_PREMIUM_USD", "ESTIMATED", "UNPRICED",
)  # fmt: skip


def _savings_cells(row: SavingsRow, exact: bool) -> tuple[str, ...]:
    cash = usd if exact else money
    return (
        row.window, row.group, str(row.requests), str(row.downgraded), str(row.light_only), str(row.auto),
        cash(row.actual_micro_usd), cash(row.asked_micro_usd), cash(row.saved_micro_usd),
        pct(row.saved_micro_usd, row.asked_micro_usd), cash(row.premium_micro_usd),
        cash(row.saved_vs_premium_micro_usd), str(row.estimated), str(row.unpriced),
    )  # fmt: skip


def savings_tables(report: SavingsReport, exact: bool = False) -> list[Table]:
    columns = (SAVINGS_COLUMNS[0], report.by.upper(), *SAVINGS_COLUMNS[2:])
    rows = [_savings_cells(row, exact) for row in (*report.rows, report.total)]
    main = Table(f"Savings by {report.by} per {report.window}", columns, tuple(rows), frozenset(range(2, 14)))
    reasons: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for item in report.left_out:
        reasons[(item.model, item.reason)][0] += 1
        reasons[(item.model, item.reason)][1] += item.cost_micro_usd
    left = tuple((m, r, str(n), money(c)) for (m, r), (n, c) in sorted(reasons.items()))
    left_table = Table(
        "Requests left out of the comparison (reported apart)",
        ("MODEL", "REASON", "REQUESTS", "LEDGER_USD"),
        left,
        frozenset({2, 3}),
    )
    return [main, left_table]


def savings_notes(report: SavingsReport) -> list[str]:
    total = report.total
    base = f"{report.baseline} ({report.baseline_source})" if report.baseline else "none (no priced model)"
    return [
        f"Baseline for auto and tier requests, and the premium column: {base}.",
        f"Saved against what apps asked for: ${money(total.saved_micro_usd)}"
        f" of ${money(total.asked_micro_usd)} ({pct(total.saved_micro_usd, total.asked_micro_usd)});"
        f" moved: {total.downgraded} DOWNGRADE,"
        f" {total.light_only} LIGHT_ONLY, {total.auto} auto.",
        f"Estimated: {total.estimated} request(s) compared at their estimated ledger cost"
        f" (${money(total.estimated_micro_usd)}). Unpriced or without usage: {total.unpriced} request(s)"
        f" left out (${money(total.unpriced_micro_usd)} in the ledger).",
    ]


def _row_json(row: SavingsRow) -> dict[str, Any]:
    return {
        "window": row.window, "group": row.group, "requests": row.requests, "compared": row.compared,
        "downgraded": row.downgraded, "lightOnly": row.light_only, "auto": row.auto,
        "actualMicroUSD": row.actual_micro_usd, "askedForMicroUSD": row.asked_micro_usd,
        "savedMicroUSD": row.saved_micro_usd, "premiumMicroUSD": row.premium_micro_usd,
        "savedVsPremiumMicroUSD": row.saved_vs_premium_micro_usd, "estimated": row.estimated,
        "estimatedMicroUSD": row.estimated_micro_usd, "unpriced": row.unpriced,
        "unpricedMicroUSD": row.unpriced_micro_usd,
    }  # fmt: skip


def savings_json(report: SavingsReport) -> dict[str, Any]:
    return {
        "by": report.by,
        "window": report.window,
        "baseline": str(report.baseline) if report.baseline else None,
        "baselineSource": report.baseline_source,
        "rows": [_row_json(row) for row in report.rows],
        "total": _row_json(report.total),
        "leftOut": [
            {"time": i.time, "requestId": i.request_id, "model": i.model, "requestedModel": i.requested_model,
             "reason": i.reason, "costMicroUSD": i.cost_micro_usd}
            for i in report.left_out
        ],
    }  # fmt: skip


def _usd_float(micro: int) -> float:
    return micro / MICRO_USD


def savings_charts(report: SavingsReport) -> list[Chart]:
    windows = tuple(sorted({row.window for row in report.rows}))
    spend: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in report.rows:
        spend[row.group][row.window] += row.actual_micro_usd + row.unpriced_micro_usd
    ranked = sorted(spend, key=lambda g: -sum(spend[g].values()))
    top, rest = ranked[:_TOP_GROUPS], ranked[_TOP_GROUPS:]
    stacks = [Series(g, tuple(_usd_float(spend[g][w]) for w in windows)) for g in top]
    if rest:
        values = tuple(_usd_float(sum(spend[g][w] for g in rest)) for w in windows)
        stacks.append(Series(f"{len(rest)} others", values))
    per_window: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    saved: dict[str, int] = defaultdict(int)
    for row in report.rows:
        per_window[row.window][0] += row.actual_micro_usd
        per_window[row.window][1] += row.asked_micro_usd
        per_window[row.window][2] += row.premium_micro_usd
        saved[row.group] += row.saved_micro_usd
    lines = [
        Series(name, tuple(_usd_float(per_window[w][i]) for w in windows))
        for i, name in enumerate(("actual", "asked for", "all on the baseline"))
    ]
    groups = tuple(sorted(saved, key=lambda g: -saved[g])[:20])
    return [
        Chart("stacked", f"Spend per {report.window} by {report.by}", windows, tuple(stacks),
              caption="Ledger cost, unpriced requests at $0."),
        Chart("line", f"Actual cost against what was asked for, per {report.window}", windows, tuple(lines),
              caption=f"Baseline: {report.baseline} ({report.baseline_source})."),
        Chart("grouped", f"Saved by {report.by} (asked-for cost minus actual cost)", groups,
              (Series("saved", tuple(_usd_float(saved[g]) for g in groups)),)),
    ]  # fmt: skip


def savings_html(report: SavingsReport, paths: Sequence[str], now: datetime) -> str:
    t = report.total
    cards = [
        ("Actual spend (compared)", f"${money(t.actual_micro_usd)}", ""),
        ("Asked-for cost", f"${money(t.asked_micro_usd)}", ""),
        ("Saved", f"${money(t.saved_micro_usd)} ({pct(t.saved_micro_usd, t.asked_micro_usd)})", "good"),
        ("Saved against the baseline", f"${money(t.saved_vs_premium_micro_usd)}", "good"),
        ("Requests moved", f"{t.downgraded} DOWNGRADE · {t.light_only} LIGHT_ONLY · {t.auto} auto", ""),
        (
            "Left out / estimated",
            f"{t.unpriced} unpriced · {t.estimated} estimated",
            "bad" if t.unpriced else "",
        ),
    ]
    subtitle = f"{t.requests} requests from {', '.join(paths)}; by {report.by}, per {report.window}"
    return render_html(
        "Sluicegate savings report", subtitle, cards, savings_charts(report), savings_tables(report),
        f"Generated {now.strftime('%Y-%m-%d %H:%M UTC')}. " + " ".join(savings_notes(report)),
    )  # fmt: skip


# -- reconcile ----------------------------------------------------------------------------------

RECONCILE_COLUMNS = (
    "DAY", "MODEL", "LEDGER_USD", "INVOICED_USD", "GAP_USD", "GAP_PCT", "LEDGER_IN", "INVOICED_IN",
    "LEDGER_OUT", "INVOICED_OUT", "STATUS",
)  # fmt: skip


def _tokens(value: int | None) -> str:
    return "-" if value is None else str(value)


def _gap_cells(row: GapRow, exact: bool) -> tuple[str, ...]:
    cash = usd if exact else money
    ledger, export = row.ledger, row.export
    status = (
        "OVER"
        if row.over
        else ("only ledger" if export is None else "only export" if ledger is None else "ok")
    )
    return (
        row.day.isoformat(), row.model, cash(ledger.cost_micro_usd or 0) if ledger else "-",
        cash(export.cost_micro_usd or 0) if export and export.cost_micro_usd is not None else "-",
        "-" if row.gap_micro_usd is None else cash(row.gap_micro_usd),
        "-" if row.gap_pct is None else f"{row.gap_pct:+.1f}%",
        _tokens(ledger.input_tokens if ledger else None), _tokens(export.input_tokens if export else None),
        _tokens(ledger.output_tokens if ledger else None), _tokens(export.output_tokens if export else None),
        status,
    )  # fmt: skip


def reconcile_tables(result: Reconciliation, exact: bool = False) -> list[Table]:
    rows = tuple(_gap_cells(row, exact) for row in result.rows)
    marked = frozenset(i for i, row in enumerate(result.rows) if row.over)
    main = Table("Ledger against the invoice, per UTC day and model", RECONCILE_COLUMNS, rows,
                 frozenset(range(2, 10)), marked)  # fmt: skip
    why = tuple(
        (
            row.day.isoformat(),
            row.model,
            "-" if row.gap_micro_usd is None else money(row.gap_micro_usd),
            cause,
        )
        for row in result.rows
        for cause in row.causes
    )
    why_marked = frozenset(i for i, cells in enumerate(why) if any(
        r.over and r.day.isoformat() == cells[0] and r.model == cells[1] for r in result.rows))  # fmt: skip
    causes = Table("What explains the differences", ("DAY", "MODEL", "GAP_USD", "CAUSE"), why,
                   frozenset({2}), why_marked)  # fmt: skip
    flagged = tuple(
        (f.time, f.request_id, f.model, f.cost_basis, str(f.input_tokens), str(f.output_tokens),
         money(f.cost_micro_usd), "-" if f.catalog_micro_usd is None else money(f.catalog_micro_usd))
        for f in result.flagged
    )  # fmt: skip
    flag_columns = ("TIME", "REQUEST_ID", "MODEL", "BASIS", "IN", "OUT", "LEDGER_USD", "CATALOG_USD")
    flag_table = Table(
        "Unpriced and estimated ledger requests", flag_columns, flagged, frozenset({4, 5, 6, 7})
    )
    return [main, causes, flag_table]


def reconcile_notes(result: Reconciliation) -> list[str]:
    over = [row for row in result.rows if row.over]
    threshold = f"${money(result.threshold_micro_usd)} and {result.threshold_pct:g}%"
    invoiced = "-" if result.invoiced_micro_usd is None else f"${money(result.invoiced_micro_usd)}"
    notes = [
        f"Export: {result.export_kind}. Ledger ${money(result.ledger_micro_usd)}, invoiced {invoiced}.",
        f"{len(over)} day-model gap(s) over {threshold}." if over else f"No day-model gap over {threshold}.",
    ]
    if result.outside_period:
        notes.append(f"{result.outside_period} ledger request(s) fall on days the export does not cover.")
    return notes


def reconcile_json(result: Reconciliation) -> dict[str, Any]:
    def side(row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        return {"costMicroUSD": row.cost_micro_usd, "inputTokens": row.input_tokens,
                "outputTokens": row.output_tokens, "cachedTokens": row.cached_tokens,
                "requests": row.requests, "models": list(row.names)}  # fmt: skip

    def flag(f: Any) -> dict[str, Any]:
        return {"time": f.time, "requestId": f.request_id, "model": f.model, "costBasis": f.cost_basis,
                "inputTokens": f.input_tokens, "outputTokens": f.output_tokens,
                "costMicroUSD": f.cost_micro_usd, "catalogMicroUSD": f.catalog_micro_usd}  # fmt: skip

    return {
        "provider": result.provider, "export": result.export_kind, "failed": result.failed,
        "ledgerMicroUSD": result.ledger_micro_usd, "invoicedMicroUSD": result.invoiced_micro_usd,
        "thresholdMicroUSD": result.threshold_micro_usd, "thresholdPct": result.threshold_pct,
        "outsidePeriod": result.outside_period,
        "rows": [
            {"day": r.day.isoformat(), "model": r.model, "ledger": side(r.ledger), "invoiced": side(r.export),
             "gapMicroUSD": r.gap_micro_usd, "gapPct": r.gap_pct, "over": r.over, "causes": list(r.causes),
             "requests": [flag(f) for f in r.flagged]}
            for r in result.rows
        ],
        "flagged": [flag(f) for f in result.flagged],
    }  # fmt: skip


def reconcile_charts(result: Reconciliation) -> list[Chart]:
    days = tuple(sorted({row.day.isoformat() for row in result.rows}))
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_model: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in result.rows:
        day = row.day.isoformat()
        totals[day][0] += (row.ledger.cost_micro_usd or 0) if row.ledger else 0
        totals[day][1] += (row.export.cost_micro_usd or 0) if row.export else 0
        by_model[row.model][day] += (row.ledger.cost_micro_usd or 0) if row.ledger else 0
    gaps = sorted((r for r in result.rows if r.gap_micro_usd), key=lambda r: -abs(r.gap_micro_usd or 0))[:40]
    gaps.sort(key=lambda r: (r.day, r.model))
    labels = tuple(f"{r.day.isoformat()} {r.model}" for r in gaps)
    models = sorted(by_model, key=lambda m: -sum(by_model[m].values()))[:_TOP_GROUPS]
    return [
        Chart("grouped", "Ledger against invoiced cost per day", days,
              (Series("ledger", tuple(_usd_float(totals[d][0]) for d in days)),
               Series("invoiced", tuple(_usd_float(totals[d][1]) for d in days)))),
        Chart("diverging", "Reconciliation gaps per day and model (invoiced minus ledger)", labels,
              (Series("gap", tuple(_usd_float(r.gap_micro_usd or 0) for r in gaps)),),
              frozenset(i for i, r in enumerate(gaps) if r.over),
              "Red: over the threshold. Above zero: billed more than the ledger recorded."),
        Chart("stacked", "Ledger spend per day by model", days,
              tuple(Series(m, tuple(_usd_float(by_model[m][d]) for d in days)) for m in models)),
    ]  # fmt: skip


def reconcile_html(result: Reconciliation, exports: Sequence[str], now: datetime) -> str:
    over = sum(1 for row in result.rows if row.over)
    invoiced = result.invoiced_micro_usd
    gap = None if invoiced is None else invoiced - result.ledger_micro_usd
    cards = [
        ("Ledger cost", f"${money(result.ledger_micro_usd)}", ""),
        ("Invoiced cost", "-" if invoiced is None else f"${money(invoiced)}", ""),
        ("Difference", "-" if gap is None else f"${money(gap)} ({pct(gap, invoiced or 0)})",
         "bad" if over else "good"),
        ("Day-model gaps over threshold", str(over), "bad" if over else "good"),
        ("Unpriced / estimated requests", str(len(result.flagged)), "bad" if result.flagged else ""),
    ]  # fmt: skip
    return render_html(
        "Sluicegate invoice reconciliation", f"{result.provider}: {', '.join(exports)}", cards,
        reconcile_charts(result), reconcile_tables(result),
        f"Generated {now.strftime('%Y-%m-%d %H:%M UTC')}. " + " ".join(reconcile_notes(result)),
    )  # fmt: skip


def metrics_text(result: Reconciliation) -> str:
    """Prometheus text exposition of the result (for a Pushgateway or a textfile collector)."""
    lines = [
        "# TYPE sluicegate_reconcile_failed gauge", f"sluicegate_reconcile_failed {int(result.failed)}",
        "# TYPE sluicegate_reconcile_ledger_usd gauge",
        f"sluicegate_reconcile_ledger_usd {usd(result.ledger_micro_usd)}",
        "# TYPE sluicegate_reconcile_gap_usd gauge",
    ]  # fmt: skip
    for row in result.rows:
        if row.gap_micro_usd is not None:
            model = row.model.replace("\\", "\\\\").replace('"', '\\"')
            labels = f'day="{row.day.isoformat()}",model="{model}",provider="{result.provider}"'
            lines.append(f"sluicegate_reconcile_gap_usd{{{labels}}} {usd(row.gap_micro_usd)}")
    return "\n".join(lines) + "\n"
