"""Invoice reconciliation: the ledger against a provider's usage or cost export, per UTC day and model. Pure.

Compares ledger entries with an export parsed by ``exports``; reads no files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sluicegate_contract.ledger import Entry, EntryUsage, parse_time
from sluicegate_contract.money import MICRO_USD

from .exports import Export, ExportRow, Provider, model_key
from .savings import ModelRef, Pricer

# -- comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flagged:
    """A ledger entry whose cost is not exact: listed apart, since it explains gaps."""

    time: str
    request_id: str
    model: str
    cost_basis: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    catalog_micro_usd: int | None  # what the catalog says it cost (unpriced rows), when it knows


@dataclass(frozen=True, slots=True)
class GapRow:
    day: date
    model: str  # as the ledger names it (or the export, when only the export has it)
    ledger: ExportRow | None
    export: ExportRow | None
    gap_micro_usd: int | None  # invoiced - ledger; None when the export has no costs
    gap_pct: float | None  # of the invoiced cost; None when nothing was invoiced
    over: bool
    causes: tuple[str, ...]
    flagged: tuple[Flagged, ...]


@dataclass(frozen=True, slots=True)
class Reconciliation:
    provider: Provider
    export_kind: str
    rows: tuple[GapRow, ...]
    flagged: tuple[Flagged, ...]
    ledger_micro_usd: int
    invoiced_micro_usd: int | None
    threshold_micro_usd: int
    threshold_pct: float
    outside_period: int  # ledger entries of this provider on days the export does not cover

    @property
    def failed(self) -> bool:
        return any(row.over for row in self.rows)


def _plus(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


def _add_row(total: ExportRow | None, row: ExportRow, key: str) -> ExportRow:
    base = total or ExportRow(row.day, key)
    return ExportRow(
        row.day,
        key,
        _plus(base.cost_micro_usd, row.cost_micro_usd),
        _plus(base.input_tokens, row.input_tokens),
        _plus(base.output_tokens, row.output_tokens),
        _plus(base.cached_tokens, row.cached_tokens),
        _plus(base.requests, row.requests),
        base.names if row.model in base.names else (*base.names, row.model),
    )


def _flag(entry: Entry, pricer: Pricer | None) -> Flagged:
    usage, value = entry.usage, None
    if entry.cost_basis == "unpriced" and usage is not None and pricer and entry.provider and entry.model:
        value = pricer(ModelRef(entry.provider, entry.model), usage, parse_time(entry.time))
    used = usage or EntryUsage(input=0, output=0)
    model, cost = entry.model or "(none)", entry.cost_micro_usd
    return Flagged(
        entry.time, entry.request_id, model, entry.cost_basis, used.input, used.output, cost, value
    )


def _ledger_sides(
    entries: Iterable[Entry], days: frozenset[date], pricer: Pricer | None
) -> tuple[dict[tuple[date, str], ExportRow], dict[tuple[date, str], list[Flagged]], int]:
    sides: dict[tuple[date, str], ExportRow] = {}
    flagged: dict[tuple[date, str], list[Flagged]] = {}
    outside = 0
    for entry in entries:
        day = parse_time(entry.time).date()
        if days and day not in days:
            outside += 1
            continue
        used = entry.usage or EntryUsage(input=0, output=0)
        name = entry.model or "(none)"
        row = ExportRow(day, name, entry.cost_micro_usd, used.input, used.output, used.cached, 1)
        key = (day, model_key(name))
        sides[key] = _add_row(sides.get(key), row, key[1])
        if entry.cost_basis != "exact":
            flagged.setdefault(key, []).append(_flag(entry, pricer))
    return sides, flagged, outside


def _usd(micro: int) -> str:
    return (
        f"${Decimal(micro) / MICRO_USD:,.2f}"
        if abs(micro) >= 10_000
        else f"${Decimal(micro) / MICRO_USD:,.6f}"
    )


def _token_cause(ledger: ExportRow, export: ExportRow) -> str | None:
    parts = []
    for label, mine, theirs in (
        ("input", ledger.input_tokens, export.input_tokens),
        ("output", ledger.output_tokens, export.output_tokens),
    ):
        if theirs is not None and mine is not None and mine != theirs:
            parts.append(f"{label} {mine:,} in the ledger vs {theirs:,} invoiced ({theirs - mine:+,})")
    return "tokens differ: " + "; ".join(parts) if parts else None


def _causes(
    ledger: ExportRow | None, export: ExportRow | None, flagged: Sequence[Flagged], gap: int | None
) -> list[str]:
    if export is None:
        return ["only in the ledger: the export has no such model on this day (another account or period?)"]
    if ledger is None:
        return [
            "only in the export: no ledger entry for this model on this day "
            "(spend that bypassed Sluicegate, another application on the account, or a non-token line item)"
        ]
    causes: list[str] = []
    unpriced = [f for f in flagged if f.cost_basis == "unpriced"]
    if unpriced:
        tokens_in, tokens_out = sum(f.input_tokens for f in unpriced), sum(f.output_tokens for f in unpriced)
        text = (
            f"{len(unpriced)} unpriced request(s) recorded at $0 "
            f"({tokens_in:,} input / {tokens_out:,} output tokens)"
        )
        values = [f.catalog_micro_usd for f in unpriced]
        if all(v is not None for v in values):
            text += f", worth {_usd(sum(v or 0 for v in values))} at catalog prices"
        causes.append(text)
    anomalous = [f for f in flagged if f.cost_basis == "anomalous"]
    if anomalous:
        cost = sum(f.cost_micro_usd for f in anomalous)
        causes.append(
            f"{len(anomalous)} anomalous request(s): the upstream reported usage no correct provider "
            f"reports (or streamed past its cap); the ledger charged {_usd(cost)} on bounded figures "
            "and keeps the reported ones (reportedUsage) to compare with the invoice"
        )
    estimated = [f for f in flagged if f.cost_basis not in ("unpriced", "anomalous")]
    if estimated:
        cost = sum(f.cost_micro_usd for f in estimated)
        causes.append(
            f"{len(estimated)} estimated request(s): {_usd(cost)} of the ledger cost is an estimate"
        )
    tokens = _token_cause(ledger, export)
    if tokens:
        causes.append(tokens)
    if not causes and gap:
        if export.input_tokens is None and export.output_tokens is None:
            causes.append("the export has no token counts to tell why: add the usage export (--export)")
        else:
            causes.append(
                "tokens agree: the per-token rates differ (a price override, or the catalog is out of date)"
            )
    return causes


def reconcile(
    entries: Iterable[Entry],
    export: Export,
    *,
    threshold_micro_usd: int,
    threshold_pct: float,
    pricer: Pricer | None = None,
) -> Reconciliation:
    """Compare per (UTC day, model). A row is over when |gap| > the USD threshold and > the % threshold.

    ``entries`` should already be this provider's; only days the export covers are compared.
    """
    mine, flagged, outside = _ledger_sides(entries, export.days, pricer)
    return compare_sides(
        mine, flagged, outside, export, threshold_micro_usd=threshold_micro_usd, threshold_pct=threshold_pct
    )


Sides = dict[tuple[date, str], ExportRow]


def fold_sides(
    rows: Iterable[ExportRow], unexact: Iterable[Entry], pricer: Pricer | None = None
) -> tuple[Sides, dict[tuple[date, str], list[Flagged]]]:
    """The ledger's side from totals already grouped by UTC day and model (the database's ``GROUP
    BY``) and the entries whose cost is not exact, keyed as ``compare_sides`` wants them."""
    sides: Sides = {}
    for row in rows:
        key = (row.day, model_key(row.model))
        sides[key] = _add_row(sides.get(key), row, key[1])
    flagged: dict[tuple[date, str], list[Flagged]] = {}
    for entry in unexact:
        key = (parse_time(entry.time).date(), model_key(entry.model or "(none)"))
        flagged.setdefault(key, []).append(_flag(entry, pricer))
    return sides, flagged


def compare_sides(
    mine: Sides,
    flagged: dict[tuple[date, str], list[Flagged]],
    outside: int,
    export: Export,
    *,
    threshold_micro_usd: int,
    threshold_pct: float,
) -> Reconciliation:
    """``reconcile`` once the ledger's side is totalled (from entries, or by SQL)."""
    theirs: dict[tuple[date, str], ExportRow] = {}
    for row in export.rows:
        key = (row.day, model_key(row.model))
        theirs[key] = _add_row(theirs.get(key), row, key[1])
    has_costs = any(row.cost_micro_usd is not None for row in export.rows)
    rows: list[GapRow] = []
    for key in sorted(set(mine) | set(theirs)):
        ledger, billed = mine.get(key), theirs.get(key)
        gap = pct = None
        over = False
        if has_costs:
            invoiced = (billed.cost_micro_usd or 0) if billed else 0
            gap = invoiced - ((ledger.cost_micro_usd or 0) if ledger else 0)
            pct = gap / invoiced * 100 if invoiced else None
            over = abs(gap) > threshold_micro_usd and (pct is None or abs(pct) > threshold_pct)
        found = tuple(flagged.get(key, ()))
        causes = tuple(_causes(ledger, billed, found, gap))
        label = (ledger or billed or ExportRow(key[0], key[1])).names[:1] or (key[1],)
        rows.append(GapRow(key[0], label[0], ledger, billed, gap, pct, over, causes, found))
    invoiced_total = sum(r.export.cost_micro_usd or 0 for r in rows if r.export) if has_costs else None
    return Reconciliation(
        export.provider,
        export.kind,
        tuple(rows),
        tuple(f for key in sorted(flagged) for f in flagged[key]),
        sum(r.ledger.cost_micro_usd or 0 for r in rows if r.ledger),
        invoiced_total,
        threshold_micro_usd,
        threshold_pct,
        outside,
    )
