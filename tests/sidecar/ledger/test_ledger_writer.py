"""The ledger writer: group commit, rotation, restart, torn tails, and a disk that refuses writes."""

from __future__ import annotations

import asyncio
import errno
import os
from datetime import timedelta
from pathlib import Path

import pytest

from sluicegate_contract.ledger import GENESIS
from sluicegate_contract.ledgerfiles import LedgerError, ledger_files, read_entries
from sluicegate_reports.ledger_cli import verify
from sluicegate_sidecar.budget import BudgetBook, Reservation
from sluicegate_sidecar.ledger.records import charges
from sluicegate_sidecar.ledger.writer import Ledger
from tests.support.budget_samples import NOON, attribution, entry, policy, write_ledger


async def test_appends_return_chained_entries_once_on_disk(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    first = await ledger.append(entry(1))
    second = await ledger.append(entry(2))
    assert (first.seq, first.prev_hash, second.seq, second.prev_hash) == (1, GENESIS, 2, first.hash)
    assert [e.request_id for e in read_entries([tmp_path])] == ["req-1", "req-2"]  # before any close
    await ledger.aclose()


async def test_an_append_returns_once_written_and_the_fdatasync_follows_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real_sync(fd)))
    ledger = Ledger.open(tmp_path, batch_delay=30)  # the background fdatasync waits to gather more
    done = await ledger.append(entry(1))
    assert syncs == []  # not waited for...
    assert [e.hash for e in read_entries([tmp_path])] == [done.hash]  # ...but in the file already
    await ledger.aclose()  # a flush does not wait for the batching delay
    assert len(syncs) == 1


async def test_with_sync_an_append_returns_only_once_fdatasynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real_sync(fd)))
    ledger = Ledger.open(tmp_path, sync=True, batch_delay=0)
    await ledger.append(entry(1))
    assert len(syncs) == 1
    await ledger.aclose()


async def test_appends_of_the_same_loop_turn_share_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(tmp_path)
    writes: list[int] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (writes.append(len(data)), real_write(fd, data))[1])
    written = await asyncio.gather(*(ledger.append(entry(i)) for i in range(50)))
    monkeypatch.undo()
    await ledger.aclose()
    assert len(writes) == 1 and [e.seq for e in written] == list(range(1, 51))
    assert verify([tmp_path]) == (50, None)


async def test_write_now_writes_the_queued_lines_at_once_in_one_write_and_only_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request alone need not wait for the loop turn's end: what is queued is in the file (and its
    futures done) when ``write_now`` returns, in one write; the turn's own write then has nothing left."""
    ledger = Ledger.open(tmp_path)
    writes: list[int] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (writes.append(len(data)), real_write(fd, data))[1])
    queued = [ledger.submit(entry(i)) for i in range(3)]
    ledger.write_now()
    assert all(future.done() for future in queued) and len(writes) == 1
    assert [e.request_id for e in read_entries([tmp_path])] == ["req-0", "req-1", "req-2"]
    await asyncio.sleep(0)  # the turn's end: no second write, no line twice
    ledger.write_now()  # nothing queued: nothing written
    monkeypatch.undo()
    await ledger.aclose()
    assert len(writes) == 1 and verify([tmp_path]) == (3, None)


async def test_a_failed_background_fdatasync_makes_the_ledger_unhealthy_until_one_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(tmp_path, batch_delay=0)

    def read_only(fd: int) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "fdatasync", read_only)
    done = await ledger.append(entry(1))  # written: acknowledged, and kept in the file
    with pytest.raises(LedgerError, match="Read-only file system"):
        await ledger.flush()
    assert not ledger.healthy  # paid requests are refused until the disk syncs again
    assert await ledger.probe() is False
    monkeypatch.undo()
    assert await ledger.probe() is True and ledger.healthy
    await ledger.append(entry(2))
    await ledger.aclose()
    assert [e.hash for e in read_entries([tmp_path])][0] == done.hash
    assert verify([tmp_path]) == (2, None)


async def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real_sync(fd)))
    ledger = Ledger.open(tmp_path, batch_max=64, batch_delay=0.005)
    written = await asyncio.gather(*(ledger.append(entry(i)) for i in range(200)))
    await ledger.aclose()
    assert sorted(e.seq for e in written) == list(range(1, 201))
    assert len(syncs) <= 10
    assert verify([tmp_path]) == (200, None)


async def test_rotation_starts_a_new_file_and_keeps_the_chain(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, max_file_bytes=2_000, batch_delay=0)
    for number in range(7):
        await ledger.append(entry(number))
    await ledger.aclose()
    files = ledger_files([tmp_path])
    assert [f.name for f in files] == ["ledger-000001.jsonl", "ledger-000002.jsonl", "ledger-000003.jsonl"]
    assert all(f.stat().st_size <= 2_000 for f in files)
    assert verify([tmp_path]) == (7, None)


async def test_a_restarted_ledger_continues_the_chain(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    await ledger.append(entry(1))
    await ledger.aclose()
    reopened = Ledger.open(tmp_path)
    assert reopened.last_seq == 1
    assert (await reopened.append(entry(2))).seq == 2
    await reopened.aclose()
    assert verify([tmp_path]) == (2, None)


def test_restart_rebuilds_the_spend_of_the_open_windows(tmp_path: Path) -> None:
    limits = (policy(amount=10_000).limits[0], policy(amount=50_000, window="month").limits[0])
    budgets = [policy("team-cap", limits=limits, split_by="team")]
    before = BudgetBook(budgets)
    recorded = []
    for number, (team, cost, when) in enumerate(
        [
            ("search", 700, NOON - timedelta(days=1)),  # yesterday: this month only
            ("search", 1_200, NOON),
            ("ads", 300, NOON),
            (None, 50, NOON),
        ]
    ):
        who = attribution(team=team) if team else attribution()
        reservation = before.reserve(who, cost, when)
        assert isinstance(reservation, Reservation)
        before.settle(reservation, cost)
        recorded.append(entry(number, cost=cost, team=team, time=when, scopes=reservation.policies))
    recorded.append(entry(9, cost=999, scopes=("deleted-policy",)))
    write_ledger(tmp_path, recorded)

    after = BudgetBook(budgets)
    since = after.earliest_window_start(NOON)
    assert after.restore(charges(read_entries([tmp_path], since=since)), NOON) == 4
    assert after.snapshot(NOON) == before.snapshot(NOON)
    assert after.headroom(attribution(team="search"), NOON) == 10_000 - 1_200


def test_files_that_end_before_the_open_windows_are_not_read(tmp_path: Path) -> None:
    old = [entry(i, time=NOON - timedelta(days=40)) for i in range(3)]
    write_ledger(tmp_path, [*old, entry(3)], max_file_bytes=2_000)
    first = tmp_path / "ledger-000001.jsonl"
    first.write_bytes(b"not read\n" + first.read_bytes())  # a full replay would stop here
    with pytest.raises(LedgerError, match="ledger-000001.jsonl:1: not a ledger entry"):
        list(read_entries([tmp_path]))
    assert [e.seq for e in read_entries([tmp_path], since=NOON - timedelta(days=1))] == [4]


async def test_a_torn_tail_is_cut_at_open_and_the_chain_goes_on(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    for number in range(3):
        await ledger.append(entry(number))
    await ledger.aclose()
    path = tmp_path / "ledger-000001.jsonl"
    with path.open("ab") as handle:
        handle.write(b'{"attribution":{"endCustomer":null,"fea')
    assert verify([tmp_path])[1] is not None
    reopened = Ledger.open(tmp_path)
    assert reopened.healthy and reopened.last_seq == 3
    assert (await reopened.append(entry(4))).seq == 4
    await reopened.aclose()
    assert verify([tmp_path]) == (4, None)


async def test_a_full_disk_fails_the_append_keeps_the_entry_and_recovers(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, max_file_bytes=2_000, batch_delay=0)
    for number in range(3):
        await ledger.append(entry(number))
    (tmp_path / "ledger-000002.jsonl").symlink_to("/dev/full")  # the next file is on a full disk
    with pytest.raises(LedgerError, match="No space left on device"):
        await ledger.append(entry(3))
    assert not ledger.healthy and ledger.problem is not None and "No space left" in ledger.problem
    assert await ledger.probe() is False

    (tmp_path / "ledger-000002.jsonl").unlink()  # space again
    assert await ledger.probe() is True
    assert ledger.healthy
    assert (await ledger.append(entry(4))).seq == 5
    await ledger.aclose()
    assert [e.request_id for e in read_entries([tmp_path])] == [f"req-{i}" for i in range(5)]
    assert verify([tmp_path]) == (5, None)


async def test_with_sync_a_failed_fsync_leaves_no_partial_batch_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(tmp_path, sync=True)
    await ledger.append(entry(0))

    def read_only(fd: int) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "fdatasync", read_only)
    results = await asyncio.gather(*(ledger.append(entry(i)) for i in range(1, 4)), return_exceptions=True)
    assert all(isinstance(r, LedgerError) for r in results)
    assert [e.seq for e in read_entries([tmp_path])] == [1]  # the unacknowledged batch was cut back
    monkeypatch.undo()
    await ledger.flush()
    await ledger.aclose()
    assert [e.request_id for e in read_entries([tmp_path])] == [f"req-{i}" for i in range(4)]
    assert verify([tmp_path]) == (4, None)


def test_a_ledger_directory_that_cannot_be_created_gives_an_unhealthy_ledger(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ledger = Ledger.open(blocker / "ledger")
    assert not ledger.healthy
    assert ledger.problem is not None and str(blocker) in ledger.problem


async def test_an_unreadable_last_line_makes_the_ledger_refuse_until_fixed(tmp_path: Path) -> None:
    first = Ledger.open(tmp_path)
    await first.append(entry(1))
    await first.aclose()
    with (tmp_path / "ledger-000001.jsonl").open("ab") as handle:
        handle.write(b"garbage\n")
    ledger = Ledger.open(tmp_path)
    assert not ledger.healthy and "ledger verify" in (ledger.problem or "")
    with pytest.raises(LedgerError):
        await ledger.append(entry(2))


async def test_a_cancelled_caller_does_not_lose_its_entry(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, batch_delay=0.05)
    task = asyncio.create_task(ledger.append(entry(1)))
    await asyncio.sleep(0)
    task.cancel()
    await ledger.aclose()
    assert [e.request_id for e in read_entries([tmp_path])] == ["req-1"]
