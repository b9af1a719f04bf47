"""Leases a sidecar opened itself under ``failMode: static`` while no authority answered: recorded on
their first report, in the same row-locked transaction as any sync (``store.Store._one`` calls this).

Such a lease holds nothing; its report is spend the sidecar made beyond its authority lease, ledgered
there, so the account takes it as settled (``leases.offline``): the accounts equal the ledgers after an
outage. Idempotent by the sidecar's lease id: a replayed report changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg

from sluicegate_contract.authority import AccountView, LeaseAsk, LeaseGrant
from sluicegate_contract.leases import Account, moved, offline
from sluicegate_contract.timestamps import format_time

from .terms import Terms


async def record_offline(
    conn: psycopg.AsyncConnection[Any],
    namespace: str,
    sidecar_id: str,
    ask: LeaseAsk,
    found: Terms,
    now: datetime,
) -> LeaseGrant | None:
    """Record the first report of an offline lease (None: not a lease id this can record)."""
    try:
        lease_id = uuid.UUID(ask.lease_id or "")
    except ValueError:
        return None
    scope = ask.scope
    key = (namespace, scope.policy, scope.split, scope.window, found.window_start)
    await conn.execute(
        "INSERT INTO budget_accounts (namespace, policy, split, window_kind, window_start, window_end, cap)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (*key, found.window_end, found.cap),
    )
    cur = await conn.execute(
        "SELECT settled, leased, window_end FROM budget_accounts WHERE namespace = %s AND policy = %s"
        " AND split = %s AND window_kind = %s AND window_start = %s FOR UPDATE",
        key,
    )
    row = await cur.fetchone()
    assert row is not None
    account = Account(found.cap, row[0], row[1])
    cur = await conn.execute(
        "SELECT sidecar_id, reported FROM budget_leases WHERE lease_id = %s FOR UPDATE", (lease_id,)
    )
    seen = await cur.fetchone()
    if seen is not None:  # recorded meanwhile by another replica (the account lock orders us after it)
        if seen[0] != sidecar_id:
            return None
        return _grant(ask, int(seen[1]), found, row[2], account, await _holders(conn, key, now))
    lease = offline(None, ask.settled_micro_usd, ask.limit_micro_usd or 0)
    account = moved(account, None, lease)
    await conn.execute(
        "UPDATE budget_accounts SET settled = %s, leased = %s, updated_at = %s WHERE namespace = %s"
        " AND policy = %s AND split = %s AND window_kind = %s AND window_start = %s",
        (account.settled, account.leased, now, *key),
    )
    await conn.execute(
        "INSERT INTO budget_leases (lease_id, namespace, policy, split, window_kind, window_start,"
        " sidecar_id, amount, reported, state, expires_at, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (lease_id, *key, sidecar_id, lease.amount, lease.reported, lease.state, now, now, now),
    )
    return _grant(ask, lease.reported, found, row[2], account, await _holders(conn, key, now))


async def _holders(conn: psycopg.AsyncConnection[Any], key: tuple[object, ...], now: datetime) -> int:
    cur = await conn.execute(
        "SELECT count(DISTINCT sidecar_id) FROM budget_leases WHERE namespace = %s AND policy = %s"
        " AND split = %s AND window_kind = %s AND window_start = %s AND state = 'open' AND expires_at > %s",
        (*key, now),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def _grant(
    ask: LeaseAsk, reported: int, found: Terms, window_end: datetime, account: Account, holders: int
) -> LeaseGrant:
    view = AccountView(
        cap_micro_usd=account.cap,
        settled_micro_usd=account.settled,
        leased_micro_usd=account.leased,
        holders=holders,
    )
    return LeaseGrant(
        scope=ask.scope,
        lease_id=ask.lease_id,
        state="closed",
        amount_micro_usd=0,
        settled_micro_usd=reported,
        ttl_ms=0,
        window_start=format_time(found.window_start),
        window_end=format_time(window_end),
        account=view,
    )
