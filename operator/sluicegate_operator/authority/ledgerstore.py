"""The fleet ledger's write side: shipped ledger entries into ``ledger_entries``, idempotently.

Runs inside the transaction of the sync's lease settlement (``store.Store.sync``): the entries and
the spend they explain commit together or not at all. ``(stream_id, seq)`` is the key, so a replayed
or retried batch inserts nothing twice (``ON CONFLICT DO NOTHING``); the reply acknowledges the
highest seq up to which the stream has no gap (and no entry shipped differs from the stored one),
and the sidecar forgets entries only up to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from sluicegate_contract.ledgerrow import COLUMNS, decode_shipped, row_values
from sluicegate_contract.schema import Config

log = logging.getLogger("sluicegate.authority")
MAX_ENTRIES = 5000  # per sync
# Built from the contract's constant column names only (no input reaches the SQL text).
_INSERT = (
    f"INSERT INTO ledger_entries ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"  # noqa: S608
    " ON CONFLICT (stream_id, seq) DO NOTHING"
)


class EntriesRefused(ValueError):
    """A shipped line is not a ledger entry, or belongs to another namespace: the sync is refused."""


def parse_entries(namespace: str, lines: Sequence[bytes]) -> list[tuple[int, str, tuple[object, ...]]]:
    """(seq, hash, row) per line; ``EntriesRefused`` for anything not an entry of ``namespace``."""
    parsed: list[tuple[int, str, tuple[object, ...]]] = []
    for number, line in enumerate(lines, 1):
        try:
            entry = decode_shipped(line)
            row = row_values("", entry, line.decode("utf-8"))
        except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
            raise EntriesRefused(f"entry {number} is not a ledger entry: {exc}") from exc
        if entry.attribution.namespace != namespace:
            raise EntriesRefused(f"entry {number} is of namespace {entry.attribution.namespace!r}")
        if entry.seq <= 0:
            raise EntriesRefused(f"entry {number} has seq {entry.seq}")
        parsed.append((entry.seq, entry.hash, row))
    return parsed


async def insert_entries(
    conn: psycopg.AsyncConnection[Any],
    namespace: str,
    stream_id: str,
    parsed: Sequence[tuple[int, str, tuple[object, ...]]],
) -> tuple[int, int]:
    """Insert (inside the caller's transaction); returns (new rows, acknowledged seq)."""
    await conn.execute(
        "INSERT INTO ledger_streams (stream_id, namespace) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (stream_id, namespace),
    )
    cur = await conn.execute(
        "SELECT acked_seq FROM ledger_streams WHERE stream_id = %s FOR UPDATE", (stream_id,)
    )
    row = await cur.fetchone()
    acked = int(row[0]) if row else 0
    fresh = [(seq, digest, values) for seq, digest, values in parsed if seq > acked]
    inserted, clash = 0, None
    # A seq at or below the acknowledged one must be the very entry stored (a replay); another entry
    # there (a wiped ledger shipping again under its old id) is never acknowledged: the reply stays
    # below it, so the sidecar keeps it rather than dropping it as already stored.
    replayed = [item for item in parsed if item[0] <= acked]
    below = await _first_clash(conn, stream_id, replayed) if replayed else None
    if fresh:
        async with conn.cursor() as cursor:
            await cursor.executemany(_INSERT, [(stream_id, *values[1:]) for _, _, values in fresh])
            inserted = max(0, cursor.rowcount)
        if inserted < len(fresh):
            clash = await _first_clash(conn, stream_id, fresh)
    cur = await conn.execute(
        "SELECT seq FROM ledger_entries WHERE stream_id = %s AND seq > %s ORDER BY seq LIMIT %s",
        (stream_id, acked, MAX_ENTRIES * 4),
    )
    for (seq,) in await cur.fetchall():
        if seq != acked + 1 or (clash is not None and seq >= clash):
            break
        acked = seq
    await conn.execute(
        "UPDATE ledger_streams SET acked_seq = %s, updated_at = now() WHERE stream_id = %s",
        (acked, stream_id),
    )
    return inserted, (acked if below is None else below - 1)


async def _first_clash(
    conn: psycopg.AsyncConnection[Any], stream_id: str, fresh: Sequence[tuple[int, str, tuple[object, ...]]]
) -> int | None:
    """An entry already stored must be the same entry (a replay). A different one under the same key
    (a stream restarted under an old id) is never acknowledged, so the sidecar keeps it; logged."""
    cur = await conn.execute(
        "SELECT seq, hash FROM ledger_entries WHERE stream_id = %s AND seq = ANY(%s)",
        (stream_id, [seq for seq, _, _ in fresh]),
    )
    stored = dict(await cur.fetchall())
    for seq, digest, _ in fresh:
        if stored.get(seq, digest) != digest:
            log.error("stream %s: entry %s differs from the one stored; not acknowledged", stream_id, seq)
            return int(seq)
    return None


PriceRow = tuple[str, str, str, str | None, str]  # (connection, provider kind, model, alias, price JSON)


def price_rows(config: Config) -> list[PriceRow]:
    """The priced models of a config, as ``ledger_prices`` keeps them."""
    return [
        (provider.name, provider.provider, model.name, model.alias, msgspec.json.encode(model.price).decode())
        for provider in config.providers
        for model in provider.models
        if model.price is not None
    ]


async def record_prices(
    conn: psycopg.AsyncConnection[Any], namespace: str, serial: int, rows: Sequence[PriceRow]
) -> None:
    """Keep a config's price book (once per serial)."""
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO ledger_prices (namespace, serial, connection, provider, model, alias, price)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
            [(namespace, serial, *row) for row in rows],
        )
