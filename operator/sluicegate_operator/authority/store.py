"""The authority's PostgreSQL store: accounts and leases, changed only inside row-locked transactions.

Each ask of a sync is one transaction: lock the account row (``FOR UPDATE``), then the lease row,
apply the contract's lease arithmetic, write both. Every replica of the authority does the same, so
``settled + leased ≤ cap`` holds without a leader. Time is the database's (``now()`` of the
transaction): one clock for every replica, and the one that places budget windows (fault 16).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sluicegate_contract.authority import (
    AccountStatus,
    AccountView,
    LeaseAsk,
    LeaseGrant,
    Refusal,
)
from sluicegate_contract.leases import Account, Lease, expired, moved, synced
from sluicegate_contract.timestamps import format_time

from .grants import gone, refused
from .ledgerstore import PriceRow, insert_entries, record_prices
from .lostgrants import Sender, unreported
from .migrations import MIGRATIONS
from .offlinestore import record_offline
from .terms import Terms as Terms
from .terms import TermsFn

Parsed = tuple[int, str, tuple[object, ...]]  # ledgerstore.parse_entries: (seq, hash, row)
Shipped = tuple[int, int]  # (new rows, acknowledged seq)
_MIGRATION_LOCK = 0x5_1C_E6A7E  # pg_advisory_xact_lock key: one migrator at a time


class StoreUnavailable(Exception):
    """The database cannot be reached or failed mid-transaction; nothing was changed."""


async def migrate(pool: AsyncConnectionPool[Any]) -> int:
    """Apply the migrations the database lacks; returns how many ran. Safe to run concurrently."""
    applied = 0
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(sql.encode())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied += 1
    return applied


class Store:
    def __init__(self, pool: AsyncConnectionPool[Any], *, ttl: timedelta) -> None:
        self._pool = pool
        self._ttl = ttl

    @classmethod
    async def connect(cls, url: str, *, ttl: timedelta = timedelta(seconds=10), max_size: int = 8) -> Store:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, open=False, timeout=5.0
        )
        await pool.open(wait=True, timeout=15.0)
        await migrate(pool)
        return cls(pool, ttl=ttl)

    async def close(self) -> None:
        await self._pool.close()

    async def sync(
        self,
        namespace: str,
        sidecar_id: str,
        asks: Sequence[LeaseAsk],
        terms: TermsFn,
        process_id: str | None = None,
    ) -> list[LeaseGrant]:
        """Apply each ask in its own transaction; raises ``StoreUnavailable`` on a database failure."""
        grants, _ = await self.sync_shipping(namespace, sidecar_id, asks, terms, process_id=process_id)
        return grants

    async def sync_shipping(
        self,
        namespace: str,
        sidecar_id: str,
        asks: Sequence[LeaseAsk],
        terms: TermsFn,
        entries: Sequence[Parsed] = (),
        process_id: str | None = None,
    ) -> tuple[list[LeaseGrant], Shipped | None]:
        """Apply each ask in its own transaction, the shipped ledger entries in the first one (or in
        their own when there is no ask); returns the grants and (new rows, acknowledged seq) when
        entries rode along. Raises ``StoreUnavailable`` on a database failure."""
        shipped: list[Shipped] = []
        with _unavailable():
            if not asks and entries:
                async with self._pool.connection() as conn, conn.transaction():
                    shipped.append(await insert_entries(conn, namespace, sidecar_id, entries))
            sender = Sender(
                sidecar_id, process_id, [u for a in asks if a.lease_id and (u := _uuid(a.lease_id))]
            )
            grants = [
                await self._one(namespace, sender, ask, terms, entries if index == 0 else (), shipped)
                for index, ask in enumerate(asks)
            ]
        return grants, (shipped[0] if entries else None)

    async def _one(
        self,
        namespace: str,
        sender: Sender,
        ask: LeaseAsk,
        terms: TermsFn,
        entries: Sequence[Parsed] = (),
        shipped: list[Shipped] | None = None,
    ) -> LeaseGrant:
        scope = ask.scope
        sidecar_id = sender.sidecar_id
        async with self._pool.connection() as conn, conn.transaction():
            if entries and shipped is not None:  # committed with this settlement, or not at all
                shipped.append(await insert_entries(conn, namespace, sidecar_id, entries))
            now = await _now(conn)
            found = terms(scope.policy, scope.split, scope.window, now)
            if ask.lease_id is not None:
                cur = await conn.execute(
                    "SELECT window_start, sidecar_id FROM budget_leases"
                    " WHERE lease_id = %s AND namespace = %s AND policy = %s AND split = %s"
                    " AND window_kind = %s",
                    (_uuid(ask.lease_id), namespace, scope.policy, scope.split, scope.window),
                )
                row = await cur.fetchone()
                if row is None and ask.offline and found is not None:  # failMode static's own lease
                    return await record_offline(conn, namespace, sidecar_id, ask, found, now) or gone(
                        ask, now
                    )
                if row is None or row[1] != sidecar_id:  # not this sidecar's: nothing to do
                    return gone(ask, now)
                start = row[0]
            elif found is None:
                return refused(ask, now, "unknown_policy")
            else:
                start = found.window_start
                await conn.execute(
                    "INSERT INTO budget_accounts"
                    " (namespace, policy, split, window_kind, window_start, window_end, cap)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (namespace, scope.policy, scope.split, scope.window, start, found.window_end, found.cap),
                )
            key = (namespace, scope.policy, scope.split, scope.window, start)
            cur = await conn.execute(
                "SELECT cap, settled, leased, window_end FROM budget_accounts"
                " WHERE namespace = %s AND policy = %s AND split = %s AND window_kind = %s"
                " AND window_start = %s FOR UPDATE",
                key,
            )
            acct_row = await cur.fetchone()
            assert acct_row is not None
            cap, settled, leased, window_end = acct_row
            if found is not None:
                cap = found.cap  # the config in force now (a lowered cap or a kill switch applies at once)
            refusal: Refusal | None = found.refusal if found is not None else "unknown_policy"
            if refusal is None and window_end <= now:
                refusal = "window_closed"
            account = Account(cap, settled, leased)
            lease: Lease | None = None
            expires_at = now
            lease_id = ask.lease_id
            if lease_id is None and sender.process_id is not None:  # after the account's lock: a grant
                lease_id = await unreported(conn, key, sender)  # committed by another replica shows
            if lease_id is not None:
                cur = await conn.execute(
                    "SELECT amount, reported, state, expires_at FROM budget_leases WHERE lease_id = %s"
                    " FOR UPDATE",
                    (_uuid(lease_id),),
                )
                lease_row = await cur.fetchone()
                assert lease_row is not None
                lease = Lease(lease_row[0], lease_row[1], lease_row[2])
                expires_at = lease_row[3]
                if lease.state == "open" and expires_at <= now:  # due: charged in full first
                    account = moved(account, lease, expired(lease))
                    lease = expired(lease)
            want, least = ask.want_micro_usd, ask.least_micro_usd
            if ask.lease_id is None and lease is not None:  # taken over: what it holds counts toward it
                held = lease.amount - lease.reported
                want, least = max(0, want - held), max(0, least - held)
            out = synced(
                account,
                lease,
                settled=ask.settled_micro_usd,
                limit=ask.limit_micro_usd,
                want=want,
                least=least,
                final=ask.final,
                allowed=refusal is None,
            )
            account = out.account
            await conn.execute(
                "UPDATE budget_accounts SET cap = %s, settled = %s, leased = %s, updated_at = %s"
                " WHERE namespace = %s AND policy = %s AND split = %s AND window_kind = %s"
                " AND window_start = %s",
                (account.cap, account.settled, account.leased, now, *key),
            )
            new = out.lease
            over = account.settled + account.leased > account.cap
            if new is not None and new.state == "open":
                # Revoked (kill switch, closed window, a cap lowered below what is out): a TTL of 0
                # makes the sidecar stop reserving on it and hand back what is not in flight.
                expires_at = now if (refusal is not None or over) else min(now + self._ttl, window_end)
            if new is not None and lease_id is None:
                lease_id = str(uuid.uuid4())
                await conn.execute(
                    "INSERT INTO budget_leases (lease_id, namespace, policy, split, window_kind,"
                    " window_start, sidecar_id, amount, reported, state, expires_at, created_at,"
                    " updated_at, process_id)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (uuid.UUID(lease_id), *key, sidecar_id, new.amount, new.reported, new.state,
                     expires_at, now, now, sender.process_id),
                )  # fmt: skip
            elif new is not None and lease_id is not None:
                await conn.execute(
                    "UPDATE budget_leases SET amount = %s, reported = %s, state = %s, expires_at = %s,"
                    " updated_at = %s WHERE lease_id = %s",
                    (new.amount, new.reported, new.state, expires_at, now, _uuid(lease_id)),
                )
            holders = await _holders(conn, key, now)
            if refusal is None and ask.want_micro_usd > 0 and out.granted == 0 and not ask.final:
                refusal = "budget_exceeded"
            view = AccountView(
                cap_micro_usd=account.cap,
                settled_micro_usd=account.settled,
                leased_micro_usd=account.leased,
                holders=holders,
            )
            ttl_ms = max(0, int((expires_at - now).total_seconds() * 1000)) if new is not None else 0
            return LeaseGrant(
                scope=scope,
                lease_id=lease_id if new is not None else None,
                state=new.state if new is not None else "closed",
                amount_micro_usd=new.amount if new is not None else 0,
                settled_micro_usd=new.reported if new is not None else 0,
                ttl_ms=ttl_ms if new is not None and new.state == "open" else 0,
                window_start=format_time(start),
                window_end=format_time(window_end),
                account=view,
                refusal=refusal,
            )

    async def record_prices(self, namespace: str, serial: int, rows: Sequence[PriceRow]) -> None:
        """Keep the price book of a config the authority serves (reports price asked-for models with it)."""
        with _unavailable():
            async with self._pool.connection() as conn, conn.transaction():
                await record_prices(conn, namespace, serial, rows)

    async def expire_due(self, limit: int = 500) -> int:
        """Charge in full the open leases whose time ran out; returns how many."""
        with _unavailable():
            return await self._expire_due(limit)

    async def _expire_due(self, limit: int) -> int:
        count = 0
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT lease_id FROM budget_leases WHERE state = 'open' AND expires_at <= now()"
                " ORDER BY expires_at LIMIT %s",
                (limit,),
            )
            due = [row[0] for row in await cur.fetchall()]
            for lease_id in due:
                async with conn.transaction():
                    now = await _now(conn)
                    cur = await conn.execute(
                        "SELECT namespace, policy, split, window_kind, window_start FROM budget_leases"
                        " WHERE lease_id = %s",
                        (lease_id,),
                    )
                    key = await cur.fetchone()
                    assert key is not None
                    cur = await conn.execute(
                        "SELECT cap, settled, leased FROM budget_accounts WHERE namespace = %s AND"
                        " policy = %s AND split = %s AND window_kind = %s AND window_start = %s FOR UPDATE",
                        key,
                    )
                    acct = await cur.fetchone()
                    cur = await conn.execute(
                        "SELECT amount, reported, state, expires_at FROM budget_leases WHERE lease_id = %s"
                        " FOR UPDATE",
                        (lease_id,),
                    )
                    row = await cur.fetchone()
                    assert acct is not None and row is not None
                    if row[2] != "open" or row[3] > now:
                        continue  # renewed or closed meanwhile
                    lease = Lease(row[0], row[1], row[2])
                    account = moved(Account(acct[0], acct[1], acct[2]), lease, expired(lease))
                    await conn.execute(
                        "UPDATE budget_accounts SET settled = %s, leased = %s, updated_at = %s"
                        " WHERE namespace = %s AND policy = %s AND split = %s AND window_kind = %s"
                        " AND window_start = %s",
                        (account.settled, account.leased, now, *key),
                    )
                    await conn.execute(
                        "UPDATE budget_leases SET state = 'expired', updated_at = %s WHERE lease_id = %s",
                        (now, lease_id),
                    )
                    count += 1
        return count

    async def accounts(self, namespace: str) -> list[AccountStatus]:
        """The namespace's accounts whose window is still open, for BudgetPolicy status."""
        with _unavailable():
            return await self._accounts(namespace)

    async def _accounts(self, namespace: str) -> list[AccountStatus]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT a.policy, a.split, a.window_kind, a.window_start, a.window_end, a.cap, a.settled,"
                " a.leased, (SELECT count(DISTINCT l.sidecar_id) FROM budget_leases l"
                "  WHERE l.namespace = a.namespace AND l.policy = a.policy AND l.split = a.split"
                "  AND l.window_kind = a.window_kind AND l.window_start = a.window_start"
                "  AND l.state = 'open' AND l.expires_at > now())"
                " FROM budget_accounts a WHERE a.namespace = %s AND a.window_end > now()"
                " ORDER BY a.policy, a.split, a.window_kind",
                (namespace,),
            )
            rows = await cur.fetchall()
        return [
            AccountStatus(
                namespace=namespace,
                policy=row[0],
                split=row[1],
                window=row[2],
                window_start=format_time(row[3]),
                window_end=format_time(row[4]),
                cap_micro_usd=row[5],
                settled_micro_usd=row[6],
                leased_micro_usd=row[7],
                holders=row[8],
            )
            for row in rows
        ]


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError) as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc


async def _now(conn: psycopg.AsyncConnection[Any]) -> datetime:
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


async def _holders(conn: psycopg.AsyncConnection[Any], key: tuple[Any, ...], now: datetime) -> int:
    cur = await conn.execute(
        "SELECT count(DISTINCT sidecar_id) FROM budget_leases WHERE namespace = %s AND policy = %s"
        " AND split = %s AND window_kind = %s AND window_start = %s AND state = 'open'"
        " AND expires_at > %s",
        (*key, now),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
