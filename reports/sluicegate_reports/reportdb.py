"""Reports on the fleet ledger in PostgreSQL: totals grouped by SQL, so a report reads a handful of
rows per window however many entries there are. Read-only; the report logic stays in the pure
modules (``invoices.compare_sides``, ``ledger_cli`` tables, ``savings``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from sluicegate_contract.ledger import Entry, decode_entry, format_time
from sluicegate_contract.schema import ModelPrice

from .exports import ExportRow
from .savings import LeftOut, ModelRef, SavingsRow
from .savingsplan import Combo, Plan

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


# -- savings ------------------------------------------------------------------------------------

_KEY = sql.SQL(
    "concat_ws(chr(31), requested_model, coalesce(connection, chr(30)), coalesce(provider, chr(30)),"
    " coalesce(model, chr(30)), coalesce(tier, chr(30)),"
    " coalesce(resolution_kind, chr(30)), coalesce(resolution_tier, chr(30)))"
)
_SAVINGS_GROUPS = {
    "team": sql.SQL("coalesce(nullif(team, ''), '(none)')"),
    "service": sql.SQL("coalesce(nullif(service, ''), '(none)')"),
    "feature": sql.SQL("coalesce(nullif(feature, ''), '(none)')"),
    "namespace": sql.SQL("coalesce(nullif(namespace, ''), '(none)')"),
    "workload": sql.SQL("coalesce(nullif(workload, ''), '(none)')"),
    "model": sql.SQL(
        "CASE WHEN coalesce(model, '') = '' THEN '(none)' ELSE coalesce(provider, 'None') || '/' || model END"
    ),
    "provider": sql.SQL("coalesce(nullif(provider, ''), '(none)')"),
    "tier": sql.SQL("coalesce(nullif(tier, ''), '(none)')"),
}
# One row's cost on the rates ``{p}`` (the tier its prompt size falls in), exactly as pricing.cost_micro_usd.
_COST_ON = (
    "((r.i - least(r.c, r.i) - least(r.w, r.i - least(r.c, r.i))) * {p}.inr + least(r.c, r.i) * {p}.cr"
    " + least(r.w, r.i - least(r.c, r.i)) * {p}.wr + r.o * {p}.outr + 999999) / 1000000"
)


def _range(since: date | None, until: date | None) -> tuple[sql.Composable, dict[str, Any]]:
    return (
        sql.SQL("(%(since)s::date IS NULL OR time::timestamp >= %(since)s::date)"
                " AND (%(until)s::date IS NULL OR time::timestamp < %(until)s::date + 1)"),
        {"since": since, "until": until},
    )  # fmt: skip


def price_book(url: str) -> dict[ModelRef, list[tuple[datetime, ModelPrice]]]:
    """Each (provider kind, model name or alias)'s prices in the configs' price books, oldest first,
    each since the authority recorded its config's serial (a price unchanged from the one before is
    not repeated)."""
    book: dict[ModelRef, list[tuple[datetime, ModelPrice]]] = {}
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT provider, model, alias, price::text, recorded_at FROM ledger_prices"
            " ORDER BY recorded_at, serial"
        ).fetchall()
    for provider, model, alias, price, recorded_at in rows:
        found = msgspec.json.decode(price, type=ModelPrice)
        for name in (model, alias):
            if not name:
                continue
            history = book.setdefault(ModelRef(provider, name), [])
            if history and history[-1][0] == recorded_at:
                history[-1] = (recorded_at, found)  # one config, two connections: the last one
            elif not history or history[-1][1] != found:
                history.append((recorded_at, found))
    return book


def combos(url: str, tz_name: str, since: date | None, until: date | None) -> list[Combo]:
    where, params = _range(since, until)
    with connect(url) as conn:
        set_zone(conn, tz_name)
        rows = conn.execute(
            sql.SQL(
                "SELECT requested_model, connection, provider, model, tier,"
                " resolution_kind, resolution_tier, max(time)"
                " FROM ledger_entries"
                " WHERE {} GROUP BY 1, 2, 3, 4, 5, 6, 7"
            ).format(where),
            params,
        ).fetchall()
    return [Combo(*row) for row in rows]


def savings_sums(
    url: str, found: Plan, *, by: str, window: str, tz_name: str, since: date | None, until: date | None
) -> tuple[list[SavingsRow], list[LeftOut]]:
    """Per (window, group) sums and the rows left out, priced and grouped in SQL."""
    where, params = _range(since, until)
    params |= {
        "keys": [c.key for c in found.combos],
        "asked": [c.asked for c in found.combos],
        "premium": [c.premium for c in found.combos],
        "reasons": [c.reason for c in found.combos],
        "autos": [c.auto for c in found.combos],
    }
    for index, name in enumerate(("rp", "rf", "rt", "ra", "ri", "ro", "rc", "rw")):
        params[name] = [rate[index] for rate in found.rates]
    base = sql.SQL(
        "WITH combos AS (SELECT * FROM unnest(%(keys)s::text[], %(asked)s::int[], %(premium)s::int[],"
        "   %(reasons)s::text[], %(autos)s::bool[]) AS c(key, asked, premium, reason, auto)),"
        " rates AS (SELECT price, coalesce(since, '-infinity') AS since,"
        "   coalesce(until, 'infinity') AS until, above, inr, outr, cr, wr,"
        "   lead(above, 1, 9223372036854775807) OVER (PARTITION BY price, since ORDER BY above) AS upto"
        "   FROM unnest(%(rp)s::int[], %(rf)s::timestamptz[], %(rt)s::timestamptz[], %(ra)s::bigint[],"
        "   %(ri)s::bigint[], %(ro)s::bigint[], %(rc)s::bigint[], %(rw)s::bigint[])"
        "   AS p(price, since, until, above, inr, outr, cr, wr)),"
        " picked AS (SELECT e.time, e.stream_id, e.seq, e.request_id, e.provider, e.model, e.requested_model,"
        "   e.cost_micro_usd, e.cost_basis, {label} AS label, {grp} AS grp,"
        "   coalesce(e.decision_action, btrim(split_part(e.verdict, ';', 1)))"
        "   AS enforced,"
        "   c.asked, c.premium, c.auto,"
        "   CASE WHEN e.cost_basis = 'unpriced' THEN 'the served model has no price (recorded at $0)'"
        "     WHEN e.input_tokens IS NULL OR coalesce(e.model, '') = '' OR coalesce(e.provider, '') = ''"
        "     THEN 'no token usage recorded' ELSE c.reason END AS why,"
        "   e.input_tokens AS i, e.output_tokens AS o, e.cached_tokens AS c, e.cache_write_tokens AS w"
        "  FROM ledger_entries e JOIN combos c ON c.key = {key} WHERE {where})"
    ).format(label=window_label(window), grp=_SAVINGS_GROUPS[by], key=_KEY, where=where)
    asked = sql.SQL(_COST_ON).format(p=sql.Identifier("pa"))
    premium = sql.SQL(_COST_ON).format(p=sql.Identifier("pp"))
    sums = base + sql.SQL(
        ", priced AS (SELECT r.*, CASE WHEN r.why IS NOT NULL THEN 0 WHEN r.asked = -1 THEN r.cost_micro_usd"
        "   ELSE {asked} END AS asked_cost,"
        "   CASE WHEN r.why IS NOT NULL THEN 0 WHEN r.premium = -1 THEN r.cost_micro_usd"
        "   ELSE {premium} END AS premium_cost FROM picked r"
        "   LEFT JOIN rates pa ON pa.price = r.asked AND r.time >= pa.since AND r.time < pa.until"
        "     AND r.i > pa.above AND r.i <= pa.upto"
        "   LEFT JOIN rates pp ON pp.price = r.premium AND r.time >= pp.since AND r.time < pp.until"
        "     AND r.i > pp.above AND r.i <= pp.upto)"
        " SELECT label, grp, count(*), count(*) FILTER (WHERE why IS NULL),"
        "  count(*) FILTER (WHERE enforced = 'DOWNGRADE'), count(*) FILTER (WHERE enforced = 'LIGHT_ONLY'),"
        "  count(*) FILTER (WHERE auto),"
        "  coalesce(sum(cost_micro_usd) FILTER (WHERE why IS NULL), 0),"
        "  coalesce(sum(asked_cost) FILTER (WHERE why IS NULL), 0),"
        "  coalesce(sum(premium_cost) FILTER (WHERE why IS NULL), 0),"
        "  count(*) FILTER (WHERE why IS NULL AND cost_basis <> 'exact'),"
        "  coalesce(sum(cost_micro_usd) FILTER (WHERE why IS NULL AND cost_basis <> 'exact'), 0),"
        "  count(*) FILTER (WHERE why IS NOT NULL),"
        "  coalesce(sum(cost_micro_usd) FILTER (WHERE why IS NOT NULL), 0)"
        " FROM priced GROUP BY 1, 2"
    ).format(asked=asked, premium=premium)
    left = base + sql.SQL(
        " SELECT time, request_id, provider, model, requested_model, why, cost_micro_usd FROM picked"
        " WHERE why IS NOT NULL ORDER BY time, stream_id, seq"
    )
    with connect(url) as conn:
        set_zone(conn, tz_name)
        grouped = conn.execute(sums, params).fetchall()
        outs = conn.execute(left, params).fetchall()
    rows = [SavingsRow(str(g[0]), str(g[1]), *(int(v) for v in g[2:])) for g in grouped]
    left_out = [
        LeftOut(format_time(t), rid, f"{prov}/{model}" if model else "(none)", req, why, int(cost))
        for t, rid, prov, model, req, why, cost in outs
    ]
    return rows, left_out
