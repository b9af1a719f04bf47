"""Leases a sidecar opened itself under failMode static, recorded by the store against a real PostgreSQL:
their spend lands in the account once, however often or however concurrently it is reported."""

from __future__ import annotations

import asyncio
import uuid

from sluicegate_operator.authority.store import Store
from tests.authority.test_authority_store import account_row, ask, terms_with


async def test_an_offline_leases_report_is_settled_once_and_a_later_larger_report_adds_the_difference(
    database_url: str,
) -> None:
    store = await Store.connect(database_url)
    terms = terms_with(1_000)
    lease_id = str(uuid.uuid4())
    try:
        (first,) = await store.sync(
            "team-a",
            "s1",
            [ask(lease_id=lease_id, settled_micro_usd=300, limit_micro_usd=500, offline=True)],
            terms,
        )
        (again,) = await store.sync(
            "team-a", "s1", [ask(lease_id=lease_id, settled_micro_usd=300, offline=True)], terms
        )
        assert account_row(database_url) == (1_000, 300, 0)
        (more,) = await store.sync(
            "team-a", "s1", [ask(lease_id=lease_id, settled_micro_usd=450, final=True, offline=True)], terms
        )
        (stolen,) = await store.sync(
            "team-a", "s2", [ask(lease_id=lease_id, settled_micro_usd=900, final=True, offline=True)], terms
        )
    finally:
        await store.close()
    assert (first.lease_id, first.state, first.settled_micro_usd, first.ttl_ms) == (
        lease_id,
        "closed",
        300,
        0,
    )
    assert (again.state, again.settled_micro_usd) == ("closed", 300)
    assert (more.state, more.settled_micro_usd) == ("closed", 450)
    assert stolen.account is None  # another sidecar's lease id: nothing recorded
    assert account_row(database_url) == (1_000, 450, 0)


async def test_spend_beyond_the_cap_from_an_outage_is_recorded_and_then_nothing_more_is_granted(
    database_url: str,
) -> None:
    store = await Store.connect(database_url)
    terms = terms_with(1_000)
    try:
        (lease,) = await store.sync("team-a", "s1", [ask(want_micro_usd=1_000, least_micro_usd=1)], terms)
        assert lease.amount_micro_usd == 1_000
        offline_id = str(uuid.uuid4())
        await store.sync(
            "team-a",
            "s1",
            [
                ask(lease_id=lease.lease_id, settled_micro_usd=1_000, final=True),
                ask(lease_id=offline_id, settled_micro_usd=200, final=True, offline=True),
            ],
            terms,
        )
        (refused,) = await store.sync("team-a", "s1", [ask(want_micro_usd=10, least_micro_usd=1)], terms)
    finally:
        await store.close()
    assert account_row(database_url) == (1_000, 1_200, 0)  # equals what the sidecar's ledger holds
    assert (refused.lease_id, refused.refusal) == (None, "budget_exceeded")


async def test_replicas_recording_the_same_offline_report_at_once_count_it_once(database_url: str) -> None:
    stores = await asyncio.gather(*(Store.connect(database_url) for _ in range(4)))
    terms = terms_with(1_000)
    lease_id = str(uuid.uuid4())
    report = ask(lease_id=lease_id, settled_micro_usd=250, final=True, offline=True)
    try:
        grants = await asyncio.gather(*(store.sync("team-a", "s1", [report], terms) for store in stores))
    finally:
        for store in stores:
            await store.close()
    assert {grant.settled_micro_usd for (grant,) in grants} == {250}
    assert account_row(database_url) == (1_000, 250, 0)
