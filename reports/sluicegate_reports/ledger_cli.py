"""``sluicegate ledger verify|export|summary``: check the hash chain, export CSV, total spend.

Reads ledger files only (through ``ledger``); never writes them. Money is printed in USD, 6 decimals.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import msgspec

from sluicegate_contract.ledger import GENESIS, Entry, decode_entry, entry_hash, entry_line, parse_time
from sluicegate_contract.ledgerfiles import (
    LedgerError,
    Pruned,
    file_index,
    file_name,
    ledger_files,
    read_entries,
    read_pruned,
)
from sluicegate_contract.money import usd
from sluicegate_contract.sidecarpod import LEDGER_DIR
from sluicegate_contract.windows import WindowKind, window_label, zone

ProblemKind = Literal["edited", "deleted", "reordered", "truncated"]
CSV_COLUMNS = (
    "seq", "time", "requestId", "namespace", "workload", "serviceAccount", "team", "service", "feature",
    "user", "endCustomer", "tags", "connection", "provider", "model", "requestedModel", "tier", "verdict",
    "status", "inputTokens", "outputTokens", "cachedTokens", "cacheWriteTokens", "costMicroUSD", "costUSD",
    "costBasis", "budgetScopes", "prevHash", "hash",
)  # fmt: skip
DIMENSIONS = (
    "team", "service", "feature", "user", "endCustomer", "namespace", "workload", "model", "provider",
    "connection", "tier", "costBasis",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad line: 1-based line number in ``path``, what is wrong and how it shows."""

    path: Path
    line: int
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.detail}"


def _lines(files: Sequence[Path], first_file: int = 0) -> Iterator[tuple[int, Path, int, bytes | None]]:
    """(file position, path, line number, line) for every line; ``None`` for a torn last line."""
    for position in range(first_file, len(files)):
        path = files[position]
        parts = path.read_bytes().split(b"\n")
        for number, raw in enumerate(parts[:-1], 1):
            yield position, path, number, raw
        if parts[-1]:
            yield position, path, len(parts), None


def _find_seq(files: Sequence[Path], position: int, after_line: int, seq: int) -> str | None:
    """Where entry ``seq`` appears after a line, if anywhere (to tell reordering from deletion)."""
    for found_position, path, number, raw in _lines(files, position):
        if (found_position == position and number <= after_line) or raw is None:
            continue
        try:
            if decode_entry(raw).seq == seq:
                return f"{path}:{number}"
        except msgspec.DecodeError:
            continue
    return None


def _file_gap(files: Sequence[Path], position: int) -> str | None:
    here = file_index(files[position])
    before = file_index(files[position - 1]) if position else 0
    if here is None or before is None or here == before + 1:
        return None
    missing = [file_name(i) for i in range(before + 1, here)]
    return ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "")


def _check(entry: Entry, raw: bytes) -> str | None:
    if entry_line(entry)[:-1] != raw:
        return "the line is not in canonical form (changed by hand)"
    if entry_hash(entry) != entry.hash:
        return "its hash does not match its content"
    return None


def pruned_prefix(paths: Sequence[str | Path]) -> Pruned | None:
    """The pruning record that explains why the kept files do not start at the first one (fleet
    mode: the sidecar deleted files the database had acknowledged); None when they do start there."""
    files = ledger_files(paths)
    if not files or file_index(files[0]) in (None, 1):
        return None
    found = read_pruned(files[0].parent)
    return found if found is not None and (file_index(files[0]) or 0) <= found.file + 1 else None


def verify(paths: Sequence[str | Path]) -> tuple[int, Problem | None]:
    """Check every line and the chain across files; returns (entries checked, first problem). A
    pruned prefix (``pruned_prefix``) is not a truncation: the chain is checked from where it ends."""
    files = ledger_files(paths)
    expected_seq, expected_prev = 1, GENESIS
    previous_place = "the start of the ledger"
    pruned = pruned_prefix(paths)
    checked = 0
    for position, path, number, raw in _lines(files):
        if pruned is not None and position == 0 and number == 1 and raw is not None:
            try:  # a crash while pruning may have left files the record says are gone: start there
                first = decode_entry(raw).seq
            except msgspec.DecodeError:
                first = pruned.seq + 1
            expected_seq = min(first, pruned.seq + 1)
            expected_prev = pruned.hash if expected_seq == pruned.seq + 1 else decode_entry(raw).prev_hash
            previous_place = f"the last pruned entry (seq {pruned.seq}, acknowledged in the database)"
        elif number == 1 and (gap := _file_gap(files, position)):
            return checked, Problem(path, 1, "truncated", f"{gap} missing before this file")
        if raw is None:
            return checked, Problem(path, number, "truncated", "the last line is incomplete (torn write)")
        try:
            entry = decode_entry(raw)
        except msgspec.DecodeError as exc:
            return checked, Problem(path, number, "edited", f"not a ledger entry ({exc})")
        if (bad := _check(entry, raw)) is not None:
            return checked, Problem(path, number, "edited", bad)
        if entry.seq < expected_seq:
            detail = f"seq {entry.seq} comes after seq {expected_seq - 1}"
            return checked, Problem(path, number, "reordered", detail)
        if entry.seq > expected_seq:
            if (later := _find_seq(files, position, number, expected_seq)) is not None:
                detail = f"seq {entry.seq} where seq {expected_seq} was expected (it is at {later})"
                return checked, Problem(path, number, "reordered", detail)
            missing = f"seq {expected_seq}" + (f" to {entry.seq - 1}" if entry.seq - 1 > expected_seq else "")
            return checked, Problem(path, number, "deleted", f"{missing} missing before this line")
        if entry.prev_hash != expected_prev:
            detail = f"prevHash does not match {previous_place} (that line or this one was rewritten)"
            return checked, Problem(path, number, "edited", detail)
        expected_seq, expected_prev = entry.seq + 1, entry.hash
        previous_place = f"{path}:{number}"
        checked += 1
    return checked, None


def _verify_live(paths: Sequence[str | Path], attempts: int = 5) -> tuple[int, Problem | None]:
    """``verify`` on a directory a running sidecar may prune meanwhile (fleet mode's retention): a file
    deleted between the listing and its reading (recorded as pruned before it is deleted) starts the
    check again from the files there are then. A file deleted without that record is still found: the
    next check sees the gap."""
    for _ in range(attempts - 1):
        try:
            return verify(paths)
        except FileNotFoundError:
            continue
    return verify(paths)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text  # no formulas in spreadsheets


def _row(entry: Entry) -> list[str]:
    attr, used = entry.attribution, entry.usage
    values: list[object] = [
        entry.seq, entry.time, entry.request_id, attr.namespace, attr.workload, attr.service_account,
        attr.team, attr.service, attr.feature, attr.user, attr.end_customer,
        json.dumps(attr.tags, sort_keys=True) if attr.tags else "", entry.connection, entry.provider,
        entry.model, entry.requested_model, entry.tier, entry.verdict, entry.status,
        used.input if used else "", used.output if used else "", used.cached if used else "",
        used.cache_write if used else "", entry.cost_micro_usd, usd(entry.cost_micro_usd),
        entry.cost_basis, ";".join(entry.budget_scopes), entry.prev_hash, entry.hash,
    ]  # fmt: skip
    return [_cell(value) for value in values]


def export_csv(paths: Sequence[str | Path], out: TextIO) -> int:
    """One CSV row per entry, columns ``CSV_COLUMNS``; returns the number of rows."""
    return _write_csv(read_entries(paths), out)


def _write_csv(entries: Iterable[Entry], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = 0
    for entry in entries:
        writer.writerow(_row(entry))
        rows += 1
    return rows


def _dimension(entry: Entry, by: str) -> str:
    attr = entry.attribution
    value: object = {
        "team": attr.team,
        "service": attr.service,
        "feature": attr.feature,
        "user": attr.user,
        "endCustomer": attr.end_customer,
        "namespace": attr.namespace,
        "workload": attr.workload,
        "model": entry.model,
        "provider": entry.provider,
        "connection": entry.connection,
        "tier": entry.tier,
        "costBasis": entry.cost_basis,
    }[by]
    return str(value) if value else "(none)"


def summarize(paths: Sequence[str | Path], window: WindowKind, by: str, tz_name: str) -> list[list[str]]:
    """Table rows (header first): spend per calendar window in ``tz_name`` and per ``by`` value."""
    tz = zone(tz_name)
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for entry in read_entries(paths):
        label = window_label(parse_time(entry.time).astimezone(tz).date(), window)
        total = totals[(label, _dimension(entry, by))]
        total[0] += 1
        total[1] += entry.usage.input if entry.usage else 0
        total[2] += entry.usage.output if entry.usage else 0
        total[3] += entry.cost_micro_usd
    return summary_table(totals, window, by)


def summary_table(groups: dict[tuple[str, str], list[int]], window: WindowKind, by: str) -> list[list[str]]:
    """Table rows from (label, value) → [requests, input, output, micro-USD], with each window's total."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (label, value), numbers in groups.items():
        for key in ((label, value), (label, "\uffffTOTAL")):
            totals[key] = [a + b for a, b in zip(totals[key], numbers, strict=True)]
    rows = [[window.upper(), by.upper(), "REQUESTS", "INPUT_TOKENS", "OUTPUT_TOKENS", "SPEND_USD"]]
    for (label, value), (count, tokens_in, tokens_out, cost) in sorted(
        totals.items(), key=lambda item: (item[0][0], item[0][1] == "\uffffTOTAL", -item[1][3], item[0][1])
    ):
        shown = "TOTAL" if value == "\uffffTOTAL" else value
        rows.append([label, shown, str(count), str(tokens_in), str(tokens_out), usd(cost)])
    return rows


def _print_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in pairs]
        out.write("  ".join(cells).rstrip() + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluicegate ledger", description="Check and read the spend ledger.")
    commands = parser.add_subparsers(dest="command", required=True)
    paths_help = f"ledger files or directories (default {LEDGER_DIR})"
    check = commands.add_parser("verify", help="check the hash chain; name the first bad line")
    check.add_argument("paths", nargs="*", default=[LEDGER_DIR], help=paths_help)
    check.add_argument("--database-url", help="verify the fleet ledger in PostgreSQL instead of files")
    check.add_argument(
        "--accounts",
        action="store_true",
        help="with --database-url: also check each window's settled total equals its ledger rows",
    )
    check.add_argument("--namespace", help="with --accounts: only this namespace")
    export = commands.add_parser("export", help="write every entry as CSV")
    export.add_argument("paths", nargs="*", default=[LEDGER_DIR], help=paths_help)
    export.add_argument("--format", choices=["csv"], default="csv")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.add_argument("--database-url", help="export the fleet ledger in PostgreSQL instead of files")
    summary = commands.add_parser("summary", help="spend by window and dimension, as a table")
    summary.add_argument("paths", nargs="*", default=[LEDGER_DIR], help=paths_help)
    summary.add_argument("--window", choices=["day", "week", "month"], default="day")
    summary.add_argument("--by", choices=DIMENSIONS, default="team")
    summary.add_argument("--tz", default="UTC", help="timezone of the calendar windows")
    summary.add_argument(
        "--database-url", help="sum the fleet ledger in PostgreSQL (in SQL) instead of files"
    )
    return parser


def _run_database(args: argparse.Namespace, out: TextIO) -> int:
    from . import reportdb  # psycopg only when a database is named
    from .ledgerdb import check_accounts, verify_database

    if args.command == "summary":
        zone(args.tz)  # a bad name fails here, as on files
        groups = reportdb.summary_totals(args.database_url, args.window, args.by, args.tz)
        _print_table(summary_table(groups, args.window, args.by), out)
        return 0
    if args.command == "export":
        if args.output is None:
            _write_csv(reportdb.entries(args.database_url), out)
        else:
            with Path(args.output).open("w", newline="", encoding="utf-8") as handle:
                _write_csv(reportdb.entries(args.database_url), handle)
        return 0

    found = verify_database(args.database_url)
    if found.problem is not None:
        print(str(found.problem), file=sys.stderr)
        return 1
    out.write(f"ok: {found.rows} entries in {found.streams} streams, every chain intact\n")
    if args.accounts:
        windows, gaps = check_accounts(args.database_url, args.namespace)
        for gap in gaps:
            print(f"accounts differ: {gap}", file=sys.stderr)
        if gaps:
            return 1
        out.write(f"ok: {windows} account windows equal the sum of their ledger rows\n")
    return 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "database_url", None):
        return _run_database(args, out)
    if args.command == "verify":
        checked, problem = _verify_live(args.paths)
        if problem is not None:
            print(str(problem), file=sys.stderr)
            return 1
        pruned = pruned_prefix(args.paths)
        after = f" (pruned up to seq {pruned.seq}, acknowledged in the database)" if pruned else ""
        out.write(f"ok: {checked} entries, chain intact{after}\n")
        return 0
    if args.command == "export":
        if args.output is None:
            export_csv(args.paths, out)
        else:
            with Path(args.output).open("w", newline="", encoding="utf-8") as handle:
                export_csv(args.paths, handle)
        return 0
    _print_table(summarize(args.paths, args.window, args.by, args.tz), out)
    return 0


def psycopg_errors() -> type[Exception]:
    import psycopg

    return psycopg.Error


def main(argv: list[str], out: TextIO | None = None) -> int:
    """Run ``sluicegate ledger ARGV``; returns the exit status (0 ok, 1 bad ledger or error, 2 usage)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "database_url", None):
        try:
            return _run(args, out or sys.stdout)
        except (psycopg_errors(), ValueError) as exc:
            print(f"sluicegate ledger: {exc}", file=sys.stderr)
            return 1
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"sluicegate ledger: {missing[0]}: no such file or directory", file=sys.stderr)
        return 1
    if not ledger_files(args.paths):
        print(f"sluicegate ledger: no ledger files in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    try:
        return _run(args, out or sys.stdout)
    except (LedgerError, OSError, ValueError) as exc:
        print(f"sluicegate ledger: {exc}", file=sys.stderr)
        return 1
