"""The fleet ledger in PostgreSQL, read side: verify every sidecar's chain, compare with the accounts.

Rows are read stream by stream in ``seq`` order through a server-side cursor (millions of rows in
constant memory). A row is good when its line is a canonical entry whose hash matches, whose ``seq``
and columns are the line's own, that follows the previous row of its stream with no gap and links to
its hash; the stream's acknowledged watermark must not be past its last row. Read-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg

from sluicegate_contract.ledger import GENESIS, decode_entry, entry_hash, entry_line
from sluicegate_contract.ledgerrow import COLUMNS, decode_shipped, row_values

RowProblemKind = Literal["edited", "deleted", "reordered", "truncated"]
_CHECKED = COLUMNS[2:-1]  # the columns derived from the line (not the key, not the line itself)
_SELECT = f"SELECT seq, {', '.join(_CHECKED)}, line FROM ledger_entries WHERE stream_id = %s ORDER BY seq"  # noqa: S608


@dataclass(frozen=True, slots=True)
class RowProblem:
    """The first bad row: its stream and seq, what is wrong and how it shows."""

    stream: str
    seq: int
    kind: RowProblemKind
    detail: str

    def __str__(self) -> str:
        return f"ledger_entries stream {self.stream} seq {self.seq}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    streams: int
    rows: int
    problem: RowProblem | None


def _streams(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT s.stream_id, coalesce(max(l.acked_seq), 0) FROM"
        " (SELECT DISTINCT stream_id FROM ledger_entries UNION SELECT stream_id FROM ledger_streams) s"
        " LEFT JOIN ledger_streams l ON l.stream_id = s.stream_id GROUP BY s.stream_id ORDER BY s.stream_id"
    ).fetchall()
    return [(str(stream), int(acked)) for stream, acked in rows]


def _rows(conn: psycopg.Connection[Any], stream: str) -> Iterator[tuple[Any, ...]]:
    with conn.cursor(name="verify_stream") as cursor:
        cursor.itersize = 5000
        cursor.execute(_SELECT, (stream,))
        yield from cursor


def _row_problem(
    stream: str, row: tuple[Any, ...], expected_seq: int, expected_prev: str
) -> RowProblem | None:
    seq, line = int(row[0]), str(row[-1])
    raw = line.encode("utf-8")
    try:
        entry = decode_entry(raw)
        shipped = decode_shipped(raw)
    except msgspec.DecodeError as exc:
        return RowProblem(stream, seq, "edited", f"the line is not a ledger entry ({exc})")
    if entry_line(entry)[:-1] != raw:
        return RowProblem(stream, seq, "edited", "the line is not in canonical form (changed by hand)")
    if entry_hash(entry) != entry.hash:
        return RowProblem(stream, seq, "edited", "its hash does not match its line")
    if entry.seq != seq:
        return RowProblem(stream, seq, "reordered", f"the row holds the entry of seq {entry.seq}")
    derived = row_values(stream, shipped, line)[2:-1]
    for name, stored, value in zip(_CHECKED, row[1:-1], derived, strict=True):
        if stored != value:
            return RowProblem(stream, seq, "edited", f"column {name} is {stored!r}, its line says {value!r}")
    if seq > expected_seq:
        missing = f"seq {expected_seq}" + (f" to {seq - 1}" if seq - 1 > expected_seq else "")
        return RowProblem(stream, seq, "deleted", f"{missing} missing before this row")
    if entry.prev_hash != expected_prev:
        return RowProblem(
            stream, seq, "edited", "prevHash does not match the previous row (one was rewritten)"
        )
    return None


def verify_database(url: str) -> DatabaseCheck:
    """Check every stream's chain; the first problem found (streams in id order)."""
    total = 0
    with psycopg.connect(url) as conn:
        conn.read_only = True
        streams = _streams(conn)
        for stream, acked in streams:
            expected_seq, expected_prev = 1, GENESIS
            for row in _rows(conn, stream):
                if (problem := _row_problem(stream, row, expected_seq, expected_prev)) is not None:
                    return DatabaseCheck(len(streams), total, problem)
                expected_seq, expected_prev = int(row[0]) + 1, str(row[-2])  # its hash column
                total += 1
            if acked >= expected_seq:
                missing = f"seq {expected_seq}" + (f" to {acked}" if acked > expected_seq else "")
                detail = f"{missing} acknowledged to the sidecar but not in the table"
                return DatabaseCheck(
                    len(streams), total, RowProblem(stream, expected_seq, "truncated", detail)
                )
    return DatabaseCheck(len(streams), total, None)


@dataclass(frozen=True, slots=True)
class AccountGap:
    """An account window whose settled spend differs from the sum of its ledger rows."""

    namespace: str
    policy: str
    window: str
    window_start: datetime
    settled_micro_usd: int
    ledger_micro_usd: int
    expired_leases: int  # charged in full at expiry: the account may exceed the ledger by these

    def __str__(self) -> str:
        why = (
            f"; {self.expired_leases} lease(s) expired and were charged in full (a sidecar crashed)"
            if self.expired_leases
            else ""
        )
        return (
            f"{self.namespace} {self.policy} {self.window} from {self.window_start.isoformat()}: accounts"
            f" settled {self.settled_micro_usd} µUSD, ledger rows sum to {self.ledger_micro_usd} µUSD{why}"
        )


def check_accounts(url: str, namespace: str | None = None) -> tuple[int, list[AccountGap]]:
    """(windows compared, those whose accounts' settled total differs from the ledger rows' sum).

    Per namespace, policy and window: settled summed over split values, against the rows of that
    namespace in the window whose budget scopes name the policy.
    """
    with psycopg.connect(url) as conn:
        conn.read_only = True
        rows = conn.execute(
            "WITH a AS (SELECT namespace, policy, window_kind, window_start, window_end,"
            "  sum(settled) AS settled FROM budget_accounts WHERE %(ns)s::text IS NULL OR namespace = %(ns)s"
            "  GROUP BY namespace, policy, window_kind, window_start, window_end)"
            " SELECT a.namespace, a.policy, a.window_kind, a.window_start, a.settled,"
            "  (SELECT coalesce(sum(e.cost_micro_usd), 0) FROM ledger_entries e"
            "   WHERE e.namespace = a.namespace AND e.time >= a.window_start AND e.time < a.window_end"
            "   AND a.policy = ANY(e.budget_scopes)),"
            "  (SELECT count(*) FROM budget_leases l WHERE l.namespace = a.namespace"
            "   AND l.policy = a.policy AND l.window_kind = a.window_kind"
            "   AND l.window_start = a.window_start AND l.state = 'expired')"
            " FROM a ORDER BY a.namespace, a.policy, a.window_kind, a.window_start",
            {"ns": namespace},
        ).fetchall()
    gaps = [
        AccountGap(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6]))
        for row in rows
        if int(row[4]) != int(row[5])
    ]
    return len(rows), gaps
