"""The lease journal's fold (pure): what a restarted sidecar owes per lease its previous process left."""

from __future__ import annotations

import array

import pytest

from sluicegate_contract.authority import SyncReply
from sluicegate_sidecar import leasejournal as lj
from sluicegate_sidecar.leases import LeaseBook
from tests.sidecar.test_sidecar_leases import grant

BOOT = "boot-1"
DAY = ("team-cap", "", "day")
MONTH = ("team-cap", "", "month")


def journal() -> lj.JournalState:
    return lj.JournalState.empty(8)


def file_of(state: lj.JournalState, records: bytes, *, boot: str = BOOT, room: int = 4_096) -> bytes:
    """A journal file holding ``records`` (after its header) and ``state``'s totals."""
    head = lj.header(boot, state.slots) + records
    return head.ljust(room, b"\0") + array.array(lj.TOTAL_FORMAT, state.totals).tobytes()


def test_a_lease_owes_what_it_settled_plus_its_reservations_never_settled_at_their_worst_case() -> None:
    state = journal()
    state.lease("l1", DAY)
    state.reserve(("l1",), 3_000)
    state.reserve(("l1",), 2_000)
    state.reserve(("l1",), 5_000)
    state.settle(("l1",), 3_000, 1_200)  # settled under its reservation
    state.settle(("l1",), 5_000, 0)  # released: it never reached a provider
    assert state.owed() == {"l1": (DAY, 1_200 + 2_000)}  # request 2 was in flight at the kill
    assert state.open() == 2_000


def test_a_reservation_on_two_windows_counts_on_both_leases() -> None:
    state = journal()
    state.lease("d", DAY)
    state.lease("m", MONTH, 700)  # a snapshot's lease: what it had settled by then
    state.reserve(("d", "m"), 400)
    state.reserve(("d", "m"), 300)
    state.settle(("d", "m"), 300, 350)  # above its reservation (price-catalog error): as it is
    assert state.owed() == {"d": (DAY, 750), "m": (MONTH, 700 + 750)}


def test_a_kill_between_a_settlements_two_stores_reports_more_never_less() -> None:
    state = journal()
    state.lease("l1", DAY)
    state.reserve(("l1",), 3_000)
    before = state.owed()["l1"][1]
    settled = state.totals[0]
    state.totals[0] = settled + 1_000  # the settlement's first store, then the kill
    assert state.owed()["l1"][1] == before + 1_000  # the reservation still counts in full


def test_a_lease_the_authority_saw_closed_is_owed_nothing_and_its_late_settlements_change_nothing() -> None:
    state = journal()
    state.lease("l1", DAY)
    state.lease("l2", DAY)
    state.reserve(("l1",), 900)
    state.done("l1")
    state.settle(("l1",), 900, 800)
    state.settle(("l9",), 5, 5)  # a lease the journal never saw: ignored
    assert state.owed() == {"l2": (DAY, 0)}
    assert state.totals[2:4] == [0, 0]  # l2's slot untouched


def test_a_journal_with_no_slot_left_says_so_and_never_gives_a_slot_twice() -> None:
    state = lj.JournalState.empty(2)
    state.lease("l1", DAY)
    state.lease("l2", DAY)
    state.done("l1")
    with pytest.raises(lj.Full):
        state.lease("l3", DAY)  # l1's slot stays spent: a late settlement of l1 cannot land on l3


def test_a_file_reads_back_to_the_leases_and_totals_it_was_written_with() -> None:
    state = journal()
    records = b"".join(
        (
            lj.lease_record("l1", DAY, state.lease("l1", DAY)),
            lj.lease_record("l2", MONTH, state.lease("l2", MONTH)),
            lj.lease_record("o1", DAY, state.lease("o1", DAY, offline=True), offline=True),
            lj.done_record("l2"),
        )
    )
    state.done("l2")
    state.reserve(("l1", "o1"), 1_000)
    state.reserve(("l1",), 2_000)
    state.settle(("l1",), 2_000, 1_500)
    again = lj.read(file_of(state, records), BOOT)
    assert again.owed() == state.owed() == {"l1": (DAY, 1_500 + 1_000), "o1": (DAY, 1_000)}
    assert again.offline == {"o1"} and again.open() == 2_000


def test_a_snapshot_holds_the_same_debts_in_the_first_slots() -> None:
    state = journal()
    for lease_id in ("l1", "l2", "l3"):
        state.lease(lease_id, DAY, offline=lease_id == "l3")
    state.reserve(("l3",), 1_000)
    state.settle(("l3",), 1_000, 400)
    state.reserve(("l3",), 200)
    state.done("l1")
    records, again = lj.snapshot(BOOT, state, 4)
    assert again.owed() == state.owed() == {"l2": (DAY, 0), "l3": (DAY, 600)}
    assert again.leases == {"l2": (DAY, 0), "l3": (DAY, 1)} and again.offline == {"l3"}
    assert lj.read(file_of(again, records[len(lj.header(BOOT, 4)) :]), BOOT).owed() == state.owed()


def unproven_files() -> list[bytes]:
    state = journal()
    state.lease("l1", DAY, 500)
    good = lj.lease_record("l1", DAY, 0)
    negative = journal()
    negative.lease("l1", DAY)
    negative.totals[1] = -5
    return [
        file_of(state, good, boot="another-boot"),  # the page cache may have lost writes
        file_of(state, good)[len(lj.header(BOOT, 8)) :],  # no header: nothing says which boot wrote it
        b'["h","boot-1"]\n' + good,  # a header of the journal's earlier format (no slots)
        file_of(state, good + b'["x",1]\n'),  # a record it does not know
        file_of(state, b'["l","l1","team-cap","","year",0]\n'),  # a window that does not exist
        file_of(state, b'["l","l1","team-cap","","day",8]\n'),  # a slot out of range
        file_of(state, good + b'["l","l2","team-cap","","day",0]\n'),  # a slot held twice
        file_of(negative, good),  # a total below zero
        lj.header(BOOT, 1_000) + good,  # a table that does not fit the file
    ]


@pytest.mark.parametrize("data", unproven_files())
def test_a_journal_that_cannot_vouch_for_every_record_proves_nothing(data: bytes) -> None:
    with pytest.raises(lj.Unproven):
        lj.read(data, BOOT)


def test_a_torn_last_record_is_ignored_the_rest_still_vouches() -> None:
    state = journal()
    state.lease("l1", DAY, 500)
    data = file_of(state, lj.lease_record("l1", DAY, 0) + b'["l","l2",')  # killed mid-copy
    assert lj.read(data, BOOT).owed() == {"l1": (DAY, 500)}


def test_an_empty_file_is_an_empty_journal() -> None:
    assert lj.read(b"", BOOT).owed() == {} and lj.read(b"\0" * 64, BOOT).owed() == {}


def test_adopted_leases_are_reported_final_at_what_they_owe_until_the_authority_has_seen_them_closed() -> (
    None
):
    book = LeaseBook()
    lj.adopt(book, {"l1": (DAY, 3_200)})
    assert book.room(DAY, 0.0) == 0  # nothing is reserved on an old lease
    (ask,) = book.asks(0.0)
    assert (ask.lease_id, ask.final, ask.settled_micro_usd, ask.want_micro_usd) == ("l1", True, 3_200, 0)
    book.failed()  # the authority unreachable: the same report again at the next sync
    (ask,) = book.asks(1.0)
    assert (ask.lease_id, ask.final, ask.settled_micro_usd) == ("l1", True, 3_200)
    book.apply(SyncReply(leases=(grant("l1", 10_000, state="reconciled", settled=3_200),)), sent_at=1.0)
    assert not book.outstanding()
    assert book.asks(2.0) == ()


def test_an_adopted_offline_lease_is_reported_offline_and_final_and_gives_no_second_allowance() -> None:
    book = LeaseBook()
    lj.adopt(book, {"l1": (DAY, 800), "o1": (DAY, 3_500)}, offline={"o1"})
    asks = {ask.lease_id: ask for ask in book.asks(0.0)}
    assert (asks["o1"].offline, asks["o1"].final, asks["o1"].settled_micro_usd) == (True, True, 3_500)
    assert (asks["l1"].offline, asks["l1"].final, asks["l1"].settled_micro_usd) == (False, True, 800)
    assert DAY in book.outage_used  # still the outage the earlier process spent the allowance in
    closed = grant("o1", 0, state="closed", settled=3_500)
    book.apply(SyncReply(leases=(closed,)), sent_at=1.0)
    assert "o1" not in book.held and not book.outage_used  # the authority answered: the outage is over


@pytest.mark.parametrize(
    ("data", "records"),
    [
        (b'["h","b",8]\n["d","l1"]\n' + b"\0" * 64, b'["h","b",8]\n["d","l1"]\n'),  # zeros past the end
        (b'["h","b",8]\n["d","l1"]\n["d",', b'["h","b",8]\n["d","l1"]\n'),  # a copy cut short
        (b'["h","b",8]\n["d"' + b"\0\0" + b'1"]\n' + b"\0" * 8, b'["h","b",8]\n'),  # its end copied first
        (b'["h","b",8]\n["d","l1"]\n', b'["h","b",8]\n["d","l1"]\n'),  # written with write(2): whole
        (b"\0" * 4096, b""),
    ],
)
def test_only_whole_records_count_the_zeros_past_the_end_and_a_torn_last_record_do_not(
    data: bytes, records: bytes
) -> None:
    assert lj.written(data) == records
