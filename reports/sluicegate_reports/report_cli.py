"""``sluicegate report savings|reconcile``: spend reports from ledger files and provider exports.

The shell around ``savings`` (and ``savingsplan``/``reportdb`` with ``--database-url``), ``exports``,
``invoices`` and ``views``/``formats``: reads the files or the database, writes the outputs, sets the
exit status (reconcile: 0 within thresholds, 1 a gap over them, 2 bad input).
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from sluicegate_contract.ledger import Entry, parse_time
from sluicegate_contract.ledgerfiles import LedgerError, ledger_files, read_entries
from sluicegate_contract.money import MICRO_USD
from sluicegate_contract.sidecarpod import LEDGER_DIR
from sluicegate_contract.windows import zone

from .exports import ExportError, merge_exports, parse_export
from .formats import render_csv, render_json, render_text
from .invoices import compare_sides, fold_sides, reconcile
from .savings import (
    GROUPS,
    ModelRef,
    SavingsReport,
    analyze_savings,
    catalog_cost,
    connection_kinds,
    parse_model_ref,
    served_models,
)
from .views import (
    metrics_text,
    money,
    reconcile_html,
    reconcile_json,
    reconcile_notes,
    reconcile_tables,
    savings_html,
    savings_json,
    savings_notes,
    savings_tables,
)


class UsageError(Exception):
    """Bad input: exit 2 with this one-line message."""


# -- the command ----------------------------------------------------------------------------------


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluicegate report", description="Spend reports from ledgers.")
    commands = parser.add_subparsers(dest="command", required=True)
    paths_help = f"ledger files or directories (default {LEDGER_DIR})"
    savings = commands.add_parser("savings", help="what routing saved against the models apps asked for")
    recon = commands.add_parser("reconcile", help="the ledger against a provider's usage or cost export")
    for sub in (savings, recon):
        sub.add_argument("paths", nargs="*", default=[LEDGER_DIR], help=paths_help)
        sub.add_argument("--format", choices=["table", "csv", "json"], default="table")
        sub.add_argument("-o", "--output", help="file for --format output (default: standard output)")
        sub.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")
        sub.add_argument("--database-url", metavar="URL",
                         help="read the fleet ledger in PostgreSQL instead of ledger files")  # fmt: skip
    savings.add_argument("--by", choices=GROUPS, default="team")
    savings.add_argument("--window", choices=["day", "week", "month"], default="day")
    savings.add_argument("--tz", default="UTC", help="timezone of the calendar windows")
    savings.add_argument("--baseline", metavar="MODEL",
                         help="model auto/tier requests are compared with, e.g. openai/gpt-4o "
                              "(default: the most expensive model served in the ledger)")  # fmt: skip
    savings.add_argument("--tier-model", action="append", default=[], metavar="TIER=MODEL",
                         help="compare tier:TIER requests with MODEL instead of the baseline")  # fmt: skip
    savings.add_argument("--since", type=date.fromisoformat, help="first day (in --tz), YYYY-MM-DD")
    savings.add_argument("--until", type=date.fromisoformat, help="last day (in --tz), YYYY-MM-DD")
    recon.add_argument("--export", action="append", required=True, metavar="FILE",
                       help="provider export (JSON or CSV); repeat to combine costs and usage")  # fmt: skip
    recon.add_argument("--connection", action="append", default=[], metavar="NAME",
                       help="only these connections' entries (default: all of that provider)")  # fmt: skip
    recon.add_argument("--threshold-usd", type=_amount, default=Decimal("0.01"),
                       help="a day-model gap must exceed this many USD to fail (default 0.01)")  # fmt: skip
    recon.add_argument("--threshold-pct", type=float, default=0.0,
                       help="... and this percentage of the invoiced cost (default 0)")  # fmt: skip
    recon.add_argument("--metrics-file", metavar="FILE", help="write the result as Prometheus text")
    recon.add_argument("--pushgateway", metavar="URL", help="push the result to a Prometheus Pushgateway")
    return parser


def ledger_dirs(paths: Sequence[str]) -> list[str]:
    """Each path, and for a directory every directory below it holding ledger files: the ledgers of
    many sidecars collected side by side (one chain per directory) are read together."""
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        found.append(raw)
        if path.is_dir():
            below = {p.parent for p in path.rglob("ledger-*.jsonl") if p.parent != path}
            found.extend(str(d) for d in sorted(below))
    return found


def _entries(paths: Sequence[str]) -> list[Entry]:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or directory")
    every = ledger_dirs(paths)
    if not ledger_files(every):
        raise UsageError(f"no ledger files in {', '.join(paths)}")
    return list(read_entries(every))


def _ref(text: str, entries: Sequence[Entry]) -> ModelRef:
    ref = parse_model_ref(text, connection_kinds(entries), served_models(entries))
    if ref is None:
        raise UsageError(f"{text!r}: name the provider or connection, e.g. openai/gpt-4o")
    return ref


def _tier_models(items: Sequence[str], ref: Callable[[str], ModelRef]) -> dict[str, ModelRef]:
    tiers: dict[str, ModelRef] = {}
    for item in items:
        tier, equals, model = item.partition("=")
        if not equals or not tier or not model:
            raise UsageError(f"--tier-model {item!r}: expected TIER=MODEL")
        tiers[tier] = ref(model)
    return tiers


def _savings_from_database(args: argparse.Namespace) -> SavingsReport:
    """Grouped and priced in SQL with the configs' price book (``ledger_prices``)."""
    from . import reportdb, savingsplan  # psycopg only when a database is named

    url = args.database_url
    every = reportdb.combos(url, args.tz, None, None)
    kinds, served = savingsplan.kinds_and_served(every)

    def ref(text: str) -> ModelRef:
        found = parse_model_ref(text, kinds, served)
        if found is None:
            raise UsageError(f"{text!r}: name the provider or connection, e.g. openai/gpt-4o")
        return found

    tiers = _tier_models(args.tier_model, ref)
    baseline = ref(args.baseline) if args.baseline else None
    whole = args.since is None and args.until is None
    combos = every if whole else reportdb.combos(url, args.tz, args.since, args.until)
    found = savingsplan.plan(combos, reportdb.price_book(url), baseline=baseline, tier_models=tiers)
    sums, left = reportdb.savings_sums(
        url, found, by=args.by, window=args.window, tz_name=args.tz, since=args.since, until=args.until
    )
    return savingsplan.report(sums, left, by=args.by, window=args.window, found=found)


def _run_savings(args: argparse.Namespace, now: datetime) -> tuple[str, str | None, int]:
    tz = zone(args.tz)
    if args.database_url:
        report = _savings_from_database(args)
        sources: Sequence[str] = ["the fleet ledger in PostgreSQL"]
    else:
        every = _entries(args.paths)
        entries = [
            e for e in every
            if (args.since is None or parse_time(e.time).astimezone(tz).date() >= args.since)
            and (args.until is None or parse_time(e.time).astimezone(tz).date() <= args.until)
        ]  # fmt: skip
        tiers = _tier_models(args.tier_model, lambda text: _ref(text, every))
        baseline = _ref(args.baseline, every) if args.baseline else None
        report = analyze_savings(
            entries,
            by=args.by,
            window=args.window,
            tz=tz,
            baseline=baseline,
            tier_models=tiers,
            pricer=catalog_cost,
        )
        sources = args.paths
    if args.format == "json":
        text = render_json(savings_json(report))
    elif args.format == "csv":
        text = render_csv(savings_tables(report, exact=True)[0])
    else:
        text = render_text(savings_tables(report), savings_notes(report))
    page = savings_html(report, sources, now) if args.html else None
    return text, page, 0


def _push(url: str, body: str) -> None:
    target = url.rstrip("/") + "/metrics/job/sluicegate_reconcile"
    if not target.startswith(("http://", "https://")):
        raise UsageError(f"--pushgateway {url!r}: expected an http(s) URL")
    request = urllib.request.Request(target, data=body.encode(), method="PUT")  # noqa: S310 (checked above)
    request.add_header("Content-Type", "text/plain; version=0.0.4")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


def _run_reconcile(args: argparse.Namespace, now: datetime) -> tuple[str, str | None, int]:
    exports = []
    for name in args.export:
        try:
            exports.append(parse_export(name, Path(name).read_bytes()))
        except OSError as exc:
            raise UsageError(f"{name}: {exc.strerror or exc}") from None
    export = merge_exports(exports)
    wanted = set(args.connection)
    threshold = int(args.threshold_usd * MICRO_USD)
    if args.database_url:
        from .reportdb import reconcile_side  # psycopg only when a database is named

        totals, unexact, outside = reconcile_side(
            args.database_url, export.provider, sorted(wanted), export.days
        )
        mine, flagged = fold_sides(totals, unexact, catalog_cost)
        result = compare_sides(
            mine, flagged, outside, export, threshold_micro_usd=threshold, threshold_pct=args.threshold_pct
        )
    else:
        entries = [
            e for e in _entries(args.paths)
            if e.provider == export.provider and (not wanted or e.connection in wanted)
        ]  # fmt: skip
        result = reconcile(
            entries,
            export,
            threshold_micro_usd=threshold,
            threshold_pct=args.threshold_pct,
            pricer=catalog_cost,
        )
    if args.format == "json":
        text = render_json(reconcile_json(result))
    elif args.format == "csv":
        text = render_csv(reconcile_tables(result, exact=True)[0])
    else:
        text = render_text(reconcile_tables(result), reconcile_notes(result))
    if args.metrics_file:
        Path(args.metrics_file).write_text(metrics_text(result), encoding="utf-8")
    if args.pushgateway:
        _push(args.pushgateway, metrics_text(result))
    if result.failed:
        worst = max((r for r in result.rows if r.over), key=lambda r: abs(r.gap_micro_usd or 0))
        print(
            f"sluicegate report reconcile: gap over threshold, largest {worst.day} {worst.model} "
            f"${money(worst.gap_micro_usd or 0)}: {'; '.join(worst.causes)}",
            file=sys.stderr,
        )
    page = reconcile_html(result, args.export, now) if args.html else None
    return text, page, 1 if result.failed else 0


def _database_errors() -> type[Exception]:
    import psycopg

    return psycopg.Error


def main(argv: Sequence[str], out: TextIO | None = None, now: datetime | None = None) -> int:
    """Run ``sluicegate report ARGV``; 0 ok, 1 reconciliation gap over the threshold, 2 bad input."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    when = now or datetime.now(UTC)
    try:
        run = _run_savings if args.command == "savings" else _run_reconcile
        text, page, status = run(args, when)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            (out or sys.stdout).write(text)
        if page is not None:
            Path(args.html).write_text(page, encoding="utf-8")
    except (UsageError, ExportError, LedgerError, ValueError, OSError, _database_errors()) as exc:
        print(f"sluicegate report: {exc}", file=sys.stderr)
        return 2
    return status
