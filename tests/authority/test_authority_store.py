"""The authority's PostgreSQL store, against a real server: the cap holds under concurrent replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg

from sluicegate_contract.authority import LeaseAsk, ScopeRef, WindowKind
from sluicegate_contract.windows import window_bounds
from sluicegate_operator.authority.migrations import MIGRATIONS
from sluicegate_operator.authority.store import Store, Terms

SCOPE = ScopeRef(policy="team-cap", window="day")


def terms_with(cap: int, refusal=None):
    def terms(policy: str, split: str, window: WindowKind, now: datetime) -> Terms | None:
        if policy != "team-cap":
            return None
        start, end = window_bounds(window, "UTC", now)
        return Terms(cap=cap, window_start=start, window_end=end, refusal=refusal)

    return terms


def ask(**fields) -> LeaseAsk:
    return LeaseAsk(scope=SCOPE, **fields)


def account_row(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT cap, settled, leased FROM budget_accounts").fetchone()
    assert row is not None
    return row


async def test_migrations_run_once_however_many_replicas_start_together(database_url: str) -> None:
    stores = await asyncio.gather(*(Store.connect(database_url) for _ in range(4)))
    for store in stores:
        await store.close()
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()]
    assert versions == [version for version, _ in MIGRATIONS]


async def test_a_grant_never_passes_what_remains_of_the_cap(database_url: str) -> None:
    store = await Store.connect(database_url)
    try:
        terms = terms_with(1_000)
        (first,) = await store.sync("team-a", "s1", [ask(want_micro_usd=600, least_micro_usd=1)], terms)
        (second,) = await store.sync("team-a", "s2", [ask(want_micro_usd=600, least_micro_usd=500)], terms)
        (third,) = await store.sync("team-a", "s3", [ask(want_micro_usd=600, least_micro_usd=1)], terms)
    finally:
        await store.close()
    assert (first.amount_micro_usd, first.state, first.refusal) == (600, "open", None)
    assert (second.lease_id, second.refusal) == (None, "budget_exceeded")  # 400 left < least 500
    assert third.amount_micro_usd == 400
    assert third.account is not None and third.account.holders == 2
    assert account_row(database_url) == (1_000, 0, 1_000)


async def test_concurrent_asks_through_two_authority_replicas_never_overcommit(database_url: str) -> None:
    replicas = [await Store.connect(database_url), await Store.connect(database_url)]
    terms = terms_with(10_000)
    try:
        grants = await asyncio.gather(
            *(
                replicas[i % 2].sync("team-a", f"s{i}", [ask(want_micro_usd=700, least_micro_usd=1)], terms)
                for i in range(40)
            )
        )
    finally:
        for store in replicas:
            await store.close()
    granted = sum(reply[0].amount_micro_usd for reply in grants)
    assert granted == 10_000
    assert account_row(database_url) == (10_000, 0, 10_000)


async def test_reports_are_cumulative_and_idempotent_and_a_final_one_returns_the_rest(
    database_url: str,
) -> None:
    store = await Store.connect(database_url)
    terms = terms_with(1_000)
    try:
        (lease,) = await store.sync("team-a", "s1", [ask(want_micro_usd=500)], terms)
        assert lease.lease_id is not None
        for _ in range(3):  # a retried report changes nothing
            await store.sync("team-a", "s1", [ask(lease_id=lease.lease_id, settled_micro_usd=120)], terms)
        assert account_row(database_url) == (1_000, 120, 380)
        (older,) = await store.sync(  # a replayed older report is ignored
            "team-a", "s1", [ask(lease_id=lease.lease_id, settled_micro_usd=50)], terms
        )
        assert older.settled_micro_usd == 120
        (closed,) = await store.sync(
            "team-a", "s1", [ask(lease_id=lease.lease_id, settled_micro_usd=200, final=True)], terms
        )
    finally:
        await store.close()
    assert closed.state == "closed"
    assert account_row(database_url) == (1_000, 200, 0)


async def test_a_grant_whose_reply_was_lost_goes_to_the_same_process_not_a_second_lease(
    database_url: str,
) -> None:
    """The replica that granted a lease died before its reply left (or the process retried at another
    replica): the process's next ask for a new lease gets that lease, not a second one that would
    leave the first charged in full. Another process of the same sidecar (a restart: the one before
    may have spent on it) gets a lease of its own, and so does a sync that names no process."""
    replicas = [await Store.connect(database_url), await Store.connect(database_url)]
    terms = terms_with(10_000)
    new_lease = [ask(want_micro_usd=600, least_micro_usd=100)]
    try:
        (lost,) = await replicas[0].sync("team-a", "s1", new_lease, terms, process_id="p1")
        (again,) = await replicas[1].sync("team-a", "s1", new_lease, terms, process_id="p1")
        (grown,) = await replicas[1].sync(
            "team-a", "s1", [ask(lease_id=again.lease_id, want_micro_usd=400)], terms, process_id="p1"
        )
        (restarted,) = await replicas[1].sync("team-a", "s1", new_lease, terms, process_id="p2")
        (nameless,) = await replicas[1].sync("team-a", "s1", new_lease, terms)
    finally:
        for replica in replicas:
            await replica.close()
    assert lost.lease_id is not None and again.lease_id == lost.lease_id
    assert (again.state, again.amount_micro_usd) == ("open", 600)  # what it held counts toward the ask
    assert (grown.lease_id, grown.amount_micro_usd) == (lost.lease_id, 1_000)
    assert len({lost.lease_id, restarted.lease_id, nameless.lease_id}) == 3
    assert account_row(database_url) == (10_000, 0, 2_200)  # 1,000 + 600 + 600 leased, nothing twice


async def test_a_lease_is_lowered_to_the_sidecars_limit_but_never_below_its_spend(database_url: str) -> None:
    store = await Store.connect(database_url)
    terms = terms_with(1_000)
    try:
        (lease,) = await store.sync("team-a", "s1", [ask(want_micro_usd=800)], terms)
        (lowered,) = await store.sync(
            "team-a",
            "s1",
            [ask(lease_id=lease.lease_id, settled_micro_usd=300, limit_micro_usd=100)],
            terms,
        )
    finally:
        await store.close()
    assert lowered.amount_micro_usd == 300
    assert account_row(database_url) == (1_000, 300, 0)


async def test_an_expired_lease_is_charged_in_full_until_its_sidecar_reports_it_final(
    database_url: str,
) -> None:
    store = await Store.connect(database_url)
    store_short = Store(store._pool, ttl=timedelta(milliseconds=100))
    terms = terms_with(1_000)
    try:
        (lease,) = await store_short.sync("team-a", "s1", [ask(want_micro_usd=400)], terms)
        await asyncio.sleep(0.3)
        assert await store.expire_due() == 1
        assert account_row(database_url) == (1_000, 400, 0)
        (renewed,) = await store.sync(  # too late to renew: the lease stays charged, no new amount
            "team-a", "s1", [ask(lease_id=lease.lease_id, settled_micro_usd=90, want_micro_usd=100)], terms
        )
        assert renewed.state == "expired"
        assert account_row(database_url) == (1_000, 400, 0)
        (final,) = await store.sync(
            "team-a", "s1", [ask(lease_id=lease.lease_id, settled_micro_usd=150, final=True)], terms
        )
    finally:
        await store.close()
    assert final.state == "reconciled"
    assert account_row(database_url) == (1_000, 150, 0)


async def test_a_kill_switch_grants_nothing_and_revokes_open_leases(database_url: str) -> None:
    store = await Store.connect(database_url)
    try:
        (lease,) = await store.sync("team-a", "s1", [ask(want_micro_usd=400)], terms_with(1_000))
        killed = terms_with(1_000, refusal="kill_switch")
        (revoked,) = await store.sync(
            "team-a", "s1", [ask(lease_id=lease.lease_id, want_micro_usd=100)], killed
        )
        (fresh,) = await store.sync("team-a", "s2", [ask(want_micro_usd=100)], killed)
    finally:
        await store.close()
    assert (revoked.state, revoked.ttl_ms, revoked.refusal, revoked.amount_micro_usd) == (
        "open",
        0,
        "kill_switch",
        400,
    )
    assert (fresh.lease_id, fresh.refusal) == (None, "kill_switch")


async def test_a_lowered_cap_revokes_leases_that_no_longer_fit(database_url: str) -> None:
    store = await Store.connect(database_url)
    try:
        (lease,) = await store.sync("team-a", "s1", [ask(want_micro_usd=800)], terms_with(1_000))
        (revoked,) = await store.sync(
            "team-a", "s1", [ask(lease_id=lease.lease_id, settled_micro_usd=10)], terms_with(500)
        )
    finally:
        await store.close()
    assert revoked.ttl_ms == 0


async def test_unknown_policies_and_foreign_leases_get_nothing(database_url: str) -> None:
    store = await Store.connect(database_url)
    terms = terms_with(1_000)
    try:
        (unknown,) = await store.sync(
            "team-a", "s1", [LeaseAsk(scope=ScopeRef(policy="nope", window="day"), want_micro_usd=5)], terms
        )
        (lease,) = await store.sync("team-a", "s1", [ask(want_micro_usd=300)], terms)
        (stolen,) = await store.sync(  # another sidecar cannot report on (or close) it
            "team-a", "s2", [ask(lease_id=lease.lease_id, settled_micro_usd=0, final=True)], terms
        )
        (other_ns,) = await store.sync(
            "team-b", "s1", [ask(lease_id=lease.lease_id, settled_micro_usd=0, final=True)], terms
        )
    finally:
        await store.close()
    assert unknown.refusal == "unknown_policy"
    assert stolen.state == "closed" and other_ns.state == "closed"
    assert account_row(database_url) == (1_000, 0, 300)


async def test_accounts_show_each_open_window_with_its_holders(database_url: str) -> None:
    store = await Store.connect(database_url)
    terms = terms_with(1_000)
    try:
        await store.sync("team-a", "s1", [ask(want_micro_usd=300)], terms)
        (lease,) = await store.sync("team-a", "s2", [ask(want_micro_usd=200)], terms)
        await store.sync(
            "team-a", "s2", [ask(lease_id=lease.lease_id, settled_micro_usd=50, final=True)], terms
        )
        (status,) = await store.accounts("team-a")
        assert await store.accounts("team-b") == []
    finally:
        await store.close()
    start, end = window_bounds("day", "UTC", datetime.now(UTC))
    assert (status.policy, status.window, status.cap_micro_usd) == ("team-cap", "day", 1_000)
    assert (status.settled_micro_usd, status.leased_micro_usd, status.holders) == (50, 300, 1)
    assert status.window_start.startswith(start.strftime("%Y-%m-%dT%H:%M:%S"))
