"""The lease journal on disk: a restarted sidecar reports what its previous process's leases cost."""

from __future__ import annotations

import asyncio
import errno
import os

import msgspec

from sluicegate_contract.authority import SyncRequest
from sluicegate_sidecar.authorityclient import AuthorityClient
from sluicegate_sidecar.journalfile import JOURNAL_FILE, LeaseJournal
from sluicegate_sidecar.leases import LeaseSettings
from tests.sidecar.test_sidecar_authorityclient import KEY
from tests.sidecar.test_sidecar_staticallowance import policy
from tests.support.authorityserver import FakeAuthority, LoopbackAuthority, Reply, Sent, refuse

DAY = ("team-cap", "", "day")


class Recording(FakeAuthority):
    def __init__(self) -> None:
        super().__init__()
        self.asks: list[tuple[str | None, int, bool]] = []
        self.offline: list[str | None] = []

    def handle(self, sent: Sent) -> Reply:
        sync = msgspec.json.decode(sent.content, type=SyncRequest)
        self.asks.extend((ask.lease_id, ask.settled_micro_usd, ask.final) for ask in sync.asks)
        self.offline.extend(ask.lease_id for ask in sync.asks if ask.offline)
        return super().handle(sent)


def client_on(
    directory, fake: FakeAuthority, authority: LoopbackAuthority, boot: str = "boot-1"
) -> AuthorityClient:
    """A sidecar process on ``directory`` syncing with ``authority``, which answers as ``fake`` now."""
    authority.answer = fake.handle
    return AuthorityClient(
        [authority.url], "s1", lambda: "default", LeaseSettings(refresh_seconds=10),
        journal=LeaseJournal(directory, boot),
    )  # fmt: skip


async def kill(client: AuthorityClient) -> None:
    """What kill -9 leaves: the journal's descriptor (and its lock) gone, its connections to the
    authority dropped, nothing reported."""
    assert client.journal is not None
    client.journal.close()
    if client._session is not None:
        await client._session.close()


async def settled_one(directory, spent: int, authority: LoopbackAuthority) -> AuthorityClient:
    """A sidecar with one request of 2,000 reserved on its lease, settled at ``spent`` and its ledger
    line written (the settlement journaled at the end of this loop turn)."""
    client = client_on(directory, FakeAuthority(), authority)
    await client.cover((KEY,), 10_000, 100)
    taken = client.take((KEY,), 2_000)
    assert taken
    client.put(taken, 2_000, spent)
    client.recorded(taken, 2_000, spent)
    return client


async def test_a_sidecar_killed_mid_burst_is_reported_at_its_settled_spend_plus_what_was_in_flight(
    tmp_path, authority
) -> None:
    first = client_on(tmp_path, FakeAuthority(), authority)
    await first.cover((KEY,), 10_000, 100)
    done = first.take((KEY,), 2_000)
    inflight = first.take((KEY,), 3_000)
    unledgered = first.take((KEY,), 1_000)
    assert done and inflight and unledgered
    first.put(done, 2_000, 1_500)
    first.recorded(done, 2_000, 1_500)  # its ledger line is written
    first.put(unledgered, 1_000, 900)  # settled in memory, its ledger line not written yet
    await asyncio.sleep(0)  # the loop turn ends: its settlements are written
    await kill(first)  # kill -9: nothing returned; the journal's writes are in the page cache
    fake = Recording()
    restarted = client_on(tmp_path, fake, authority)
    assert restarted.book.outstanding()
    await restarted.sync()
    assert fake.asks == [("l1", 1_500 + 3_000 + 1_000, True)]  # unknown outcomes at their worst case
    assert not restarted.book.outstanding()  # the authority has seen it closed: nothing owed any more
    await restarted.close()
    again = Recording()
    third = client_on(tmp_path, again, authority)
    await third.sync()
    assert again.asks == []  # reported once, never again
    await third.close()


async def test_a_settlement_is_in_the_journal_as_soon_as_its_ledger_line_is_written(
    tmp_path, authority
) -> None:
    first = await settled_one(tmp_path, 1_500, authority)
    await kill(first)  # at once: no loop turn, no flush
    fake = Recording()
    restarted = client_on(tmp_path, fake, authority)
    await restarted.sync()
    assert fake.asks == [("l1", 1_500, True)]
    await restarted.close()


def test_a_request_changes_the_file_without_a_system_call(tmp_path, monkeypatch) -> None:
    """The journal is mapped: a reservation or a settlement is in the page cache (what another
    process reads, what a killed process leaves) as soon as it is made, with no write call on the
    request path and no record: two totals of the lease change in place."""
    journal = LeaseJournal(tmp_path, "boot-1")
    journal.recover()
    journal.lease("l1", DAY)
    size = (tmp_path / JOURNAL_FILE).stat().st_size
    before = (tmp_path / JOURNAL_FILE).read_bytes()
    calls: list[str] = []
    for name in ("write", "pwrite", "writev", "fsync", "fdatasync"):
        monkeypatch.setattr(os, name, lambda *args, name=name: calls.append(name))
    for _ in range(10):
        journal.reserve(("l1",), 1_000)
    for _ in range(7):
        journal.settle(("l1",), 1_000, 10)
    monkeypatch.undo()
    assert calls == []
    on_disk = (tmp_path / JOURNAL_FILE).read_bytes()  # another reader, while the journal is open
    assert len(on_disk) == size and sum(a != b for a, b in zip(on_disk, before, strict=True)) <= 16
    journal.close()  # what kill -9 leaves: the mapping and the lock gone, the pages in the file
    restarted = LeaseJournal(tmp_path, "boot-1")
    assert restarted.recover() == {"l1": (DAY, 7 * 10 + 3 * 1_000)}  # 8, 9, 10 at their worst case
    restarted.close()


def test_a_lease_record_torn_by_a_kill_is_ignored_and_the_rest_still_vouches_for_the_leases(tmp_path) -> None:
    journal = LeaseJournal(tmp_path, "boot-1")
    journal.recover()
    journal.lease("l1", DAY)
    journal.reserve(("l1",), 1_000)
    journal.reserve(("l1",), 700)
    journal.settle(("l1",), 1_000, 40)
    assert journal._map is not None
    end = journal._size
    journal._map[end : end + 6] = b'["l","'  # killed in the middle of copying the next lease's record
    journal._map[end + 9 : end + 12] = b'y"]'  # (a copy need not run front to back)
    journal.close()
    restarted = LeaseJournal(tmp_path, "boot-1")
    assert restarted.recover() == {"l1": (DAY, 40 + 700)}  # that lease held nothing yet
    restarted.close()


async def test_a_clean_shutdown_leaves_nothing_to_report(tmp_path, authority) -> None:
    first = await settled_one(tmp_path, 1_000, authority)
    await first.close()
    fake = Recording()
    restarted = client_on(tmp_path, fake, authority)
    assert not restarted.book.outstanding()
    await restarted.close()


async def test_a_journal_of_another_boot_proves_nothing_and_its_leases_stay_charged_in_full(
    tmp_path, authority
) -> None:
    first = client_on(tmp_path, FakeAuthority(), authority, boot="boot-1")
    await first.cover((KEY,), 10_000, 100)
    assert first.take((KEY,), 2_000)
    await kill(first)
    restarted = client_on(tmp_path, Recording(), authority, boot="boot-2")  # the node rebooted
    assert not restarted.book.outstanding()
    await restarted.close()


async def test_a_report_the_authority_never_answered_is_owed_again_after_another_restart(
    tmp_path, authority
) -> None:
    first = client_on(tmp_path, FakeAuthority(), authority)
    await first.cover((KEY,), 10_000, 100)
    assert first.take((KEY,), 2_000)
    await kill(first)
    second = client_on(tmp_path, FakeAuthority(), authority)
    authority.answer = refuse
    assert not await second.sync()
    await kill(second)  # killed again before the authority answered
    fake = Recording()
    third = client_on(tmp_path, fake, authority)
    await third.sync()
    assert fake.asks == [("l1", 2_000, True)]
    await third.close()


async def test_a_sidecar_killed_while_serving_its_static_allowance_reports_that_spend_offline_after_a_restart(
    tmp_path, authority
) -> None:
    first = client_on(tmp_path, FakeAuthority(), authority)
    first.book.budgets = lambda: (policy(),)
    first.book.new_id = lambda: "o1"
    await first.cover((KEY,), 10_000, 100)
    lease = first.take((KEY,), 10_000)
    assert lease == ("l1",)
    first.put(lease, 10_000, 10_000)
    first.recorded(lease, 10_000, 10_000)
    authority.answer = refuse  # the authority is gone
    await first.cover((KEY,), 3_000, 100)  # the sync fails: the lease is spent, the allowance opens
    done = first.take((KEY,), 3_000)
    inflight = first.take((KEY,), 1_500)
    assert done == inflight == ("o1",)
    first.put(done, 3_000, 2_000)
    first.recorded(done, 3_000, 2_000)
    await asyncio.sleep(0)  # the loop turn ends: its settlement is written
    await kill(first)  # kill -9 mid-outage: the allowance's spend is in the ledger only
    fake = Recording()
    restarted = client_on(tmp_path, fake, authority)  # the authority is back
    await restarted.sync()
    assert ("o1", 2_000 + 1_500, True) in fake.asks  # settled plus what was in flight at worst case
    assert fake.offline == ["o1"]  # as a lease the sidecar opened itself: spend to record
    await restarted.close()


async def test_the_first_request_after_a_restart_is_served_though_the_first_background_sync_was_under_way(
    tmp_path, authority
) -> None:
    first = client_on(tmp_path, FakeAuthority(), authority)
    await first.cover((KEY,), 10_000, 100)
    assert first.take((KEY,), 2_000)
    await kill(first)
    fake = FakeAuthority()

    async def slow(sent: Sent) -> Reply:
        await asyncio.sleep(0.2)  # a first sync shipping a backlog of ledger lines takes a while
        return fake.handle(sent)

    restarted = client_on(tmp_path, fake, authority)
    authority.answer = slow
    background = asyncio.create_task(restarted.sync())  # the loop's first sync: the old lease's report
    await asyncio.sleep(0.05)
    await restarted.cover((KEY,), 2_000, 100)  # the first request, while that sync is in flight
    assert background.done()
    # That sync was sent before the request asked for anything: the request gets a sync of its own,
    # not an instant 503 as if the authority were away.
    assert restarted.shortfall(KEY, 2_000) is None
    assert restarted.take((KEY,), 2_000)
    await restarted.close()


def test_a_second_live_process_on_the_volume_journals_nothing(tmp_path) -> None:
    first = LeaseJournal(tmp_path, "boot-1")
    first.recover()
    first.lease("l1", DAY)
    second = LeaseJournal(tmp_path, "boot-1")
    assert second.recover() == {}  # it cannot tell what the live one has in flight
    assert not second.active
    first.reserve(("l1",), 500)
    first.close()
    third = LeaseJournal(tmp_path, "boot-1")
    assert third.recover() == {"l1": (DAY, 500)}
    third.close()


def test_a_long_lived_journal_is_compacted_to_what_is_still_owed(tmp_path) -> None:
    """Leases come and go (every slot is given once): when its slots or its room for records run
    out, the journal is rewritten as the leases still open, their totals kept."""
    journal = LeaseJournal(tmp_path, "boot-1", compact_bytes=4_096)
    journal.recover()
    journal.lease("l1", DAY)
    for n in range(2_000):
        journal.lease(f"old-{n}", DAY)
        journal.reserve(("l1", f"old-{n}"), 1_000)
        if n != 1_000:
            journal.settle(("l1", f"old-{n}"), 1_000, 10)
        journal.done(f"old-{n}")
    assert (tmp_path / JOURNAL_FILE).stat().st_size <= 4_096 + 256 * 16
    journal.close()
    restarted = LeaseJournal(tmp_path, "boot-1")
    assert restarted.recover() == {"l1": (DAY, 1_999 * 10 + 1_000)}
    restarted.close()


def test_a_journal_that_cannot_be_written_is_removed_so_a_restart_never_under_reports(
    tmp_path, monkeypatch
) -> None:
    """The volume fills up: the journal's next file cannot get its blocks (it is compacted into a new
    one when full). It is removed and journals nothing more; its leases are charged in full."""
    journal = LeaseJournal(tmp_path, "boot-1", compact_bytes=4_096)
    journal.recover()
    journal.lease("l1", DAY)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    for n in range(1_000):  # past the first file's 4 KiB of records
        journal.lease(f"old-{n}", DAY)
        journal.done(f"old-{n}")
    assert not journal.active
    assert not (tmp_path / JOURNAL_FILE).exists()
    journal.reserve(("l1",), 500)  # journals nothing, raises nothing
