"""Reports on the fleet ledger in PostgreSQL: totals grouped by SQL, so a report reads a handful of
rows per window however many entries there are. Read-only; the report logic stays in the pure
modules (``reconcile.compare_sides``, ``ledger_cli`` tables, ``savings``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from .exports import ExportRow
from .ledger import Entry, decode_entry

# ``ledger summary --by`` dimension → column (the values are fixed: never user text in SQL).
DIMENSION_COLUMNS = {
    "team": "team",
    "service": "service",
    "feature": "feature",
    "user": "user_name",
    "endCustomer": "end_customer",
    "namespace": "namespace",
    "workload": "workload",
    "model": "model",
    "provider": "provider",
    "connection": "connection",
    "tier": "tier",
    "costBasis": "cost_basis",
}
# Calendar window labels as ``ledger summary`` and ``report savings`` print them (ISO weeks).
WINDOW_FORMATS = {"day": "YYYY-MM-DD", "week": 'IYYY-"W"IW', "month": "YYYY-MM"}


def connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url)
    conn.read_only = True
    return conn


def window_label(window: str) -> sql.Composable:
    """SQL for a row's calendar window label in the session's time zone (``SET TIME ZONE``)."""
    return sql.SQL("to_char(time::timestamp, {})").format(sql.Literal(WINDOW_FORMATS[window]))


def set_zone(conn: psycopg.Connection[Any], tz_name: str) -> None:
    conn.execute(sql.SQL("SET TIME ZONE {}").format(sql.Literal(tz_name)))


def summary_totals(url: str, window: str, by: str, tz_name: str) -> dict[tuple[str, str], list[int]]:
    """(window label, value) → [requests, input tokens, output tokens, micro-USD], grouped in SQL."""
    column = sql.Identifier(DIMENSION_COLUMNS[by])
    query = sql.SQL(
        "SELECT {label}, coalesce(nullif({col}, ''), '(none)'), count(*), coalesce(sum(input_tokens), 0),"
        " coalesce(sum(output_tokens), 0), sum(cost_micro_usd) FROM ledger_entries GROUP BY 1, 2"
    ).format(label=window_label(window), col=column)
    with connect(url) as conn:
        set_zone(conn, tz_name)
        rows = conn.execute(query).fetchall()
    return {(str(r[0]), str(r[1])): [int(r[2]), int(r[3]), int(r[4]), int(r[5])] for r in rows}


def entries(url: str, batch: int = 5000) -> Iterator[Entry]:
    """Every entry, by time (then stream and seq), through a server-side cursor."""
    with connect(url) as conn, conn.cursor(name="ledger_export") as cursor:
        cursor.itersize = batch
        cursor.execute("SELECT line FROM ledger_entries ORDER BY time, stream_id, seq")
        for (line,) in cursor:
            yield decode_entry(str(line).encode("utf-8"))


def reconcile_side(
    url: str, provider: str, connections: Sequence[str], days: frozenset[date]
) -> tuple[list[ExportRow], list[Entry], int]:
    """The ledger's side of a reconciliation: per UTC day and model totals of ``provider``'s rows (on
    the export's days), the entries whose cost is not exact there, and how many rows fall outside."""
    where = sql.SQL(
        "provider = %(provider)s AND (cardinality(%(conns)s::text[]) = 0 OR connection = ANY(%(conns)s))"
    )
    params: dict[str, Any] = {"provider": provider, "conns": list(connections), "days": sorted(days)}
    on_days = sql.SQL(
        "(cardinality(%(days)s::date[]) = 0 OR (time AT TIME ZONE 'UTC')::date = ANY(%(days)s))"
    )
    with connect(url) as conn:
        totals = conn.execute(
            sql.SQL(
                "SELECT (time AT TIME ZONE 'UTC')::date, coalesce(model, '(none)'), sum(cost_micro_usd),"
                " coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
                " coalesce(sum(cached_tokens), 0), count(*) FROM ledger_entries WHERE {} AND {}"
                " GROUP BY 1, 2 ORDER BY 1, 2"
            ).format(where, on_days),
            params,
        ).fetchall()
        unexact = conn.execute(
            sql.SQL(
                "SELECT line FROM ledger_entries WHERE {} AND {} AND cost_basis <> 'exact'"
                " ORDER BY time, stream_id, seq"
            ).format(where, on_days),
            params,
        ).fetchall()
        outside_row = conn.execute(
            sql.SQL("SELECT count(*) FROM ledger_entries WHERE {} AND NOT {}").format(where, on_days), params
        ).fetchone()
    rows = [ExportRow(r[0], str(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in totals]
    flagged = [decode_entry(str(line).encode("utf-8")) for (line,) in unexact]
    return rows, flagged, int(outside_row[0]) if outside_row else 0
