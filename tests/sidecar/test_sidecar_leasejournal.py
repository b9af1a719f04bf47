"""The lease journal's fold (pure): what a restarted sidecar owes per lease its previous process left."""

from __future__ import annotations

import pytest

from sluicegate_contract.authority import SyncReply
from sluicegate_sidecar import leasejournal as lj
from sluicegate_sidecar.leases import LeaseBook
from tests.sidecar.test_sidecar_leases import grant

BOOT = "boot-1"
DAY = ("team-cap", "", "day")
MONTH = ("team-cap", "", "month")


def lines(*records: bytes, boot: str = BOOT) -> list[bytes]:
    return b"".join((lj.header(boot), *records)).splitlines()


def fold(journal: list[bytes]) -> lj.JournalState:
    return lj.fold(journal, BOOT)


def test_a_lease_owes_what_it_settled_plus_its_reservations_never_settled_at_their_worst_case() -> None:
    state = fold(
        lines(
            lj.lease_record("l1", DAY),
            lj.reserve_record(1, 3_000, ("l1",)),
            lj.reserve_record(2, 2_000, ("l1",)),
            lj.reserve_record(3, 5_000, ("l1",)),
            lj.settle_record(1, 1_200),  # settled under its reservation
            lj.settle_record(3, 0),  # released: it never reached a provider
        )
    )
    assert state.owed() == {"l1": (DAY, 1_200 + 2_000)}  # request 2 was in flight at the kill


def test_a_reservation_on_two_windows_counts_on_both_leases() -> None:
    state = fold(
        lines(
            lj.lease_record("d", DAY),
            lj.lease_record("m", MONTH, 700),  # a snapshot's lease: what it had settled by then
            lj.reserve_record(1, 400, ("d", "m")),
            lj.reserve_record(2, 300, ("d", "m")),
            lj.settle_record(2, 350),  # above its reservation (price-catalog error): as it is
        )
    )
    assert state.owed() == {"d": (DAY, 750), "m": (MONTH, 700 + 750)}


def test_a_lease_the_authority_saw_closed_is_owed_nothing_and_its_late_settlements_change_nothing() -> None:
    state = fold(
        lines(
            lj.lease_record("l1", DAY),
            lj.lease_record("l2", DAY),
            lj.reserve_record(1, 900, ("l1",)),
            lj.done_record("l1"),
            lj.settle_record(1, 800),
            lj.settle_record(99, 5),  # a reservation the journal never saw: ignored
        )
    )
    assert state.owed() == {"l2": (DAY, 0)}
    assert state.reserved == {}


def test_a_snapshot_folds_to_the_same_debts_as_the_records_it_replaces() -> None:
    records = lines(
        lj.lease_record("l1", DAY),
        lj.lease_record("l2", MONTH),
        lj.reserve_record(1, 1_000, ("l1", "l2")),
        lj.reserve_record(2, 2_000, ("l1",)),
        lj.settle_record(2, 1_500),
        lj.done_record("l2"),
    )
    state = fold(records)
    again = fold(lj.snapshot(BOOT, state).splitlines())
    assert again.owed() == state.owed() == {"l1": (DAY, 1_500 + 1_000)}
    assert again.reserved == {1: (1_000, ("l1",))}


@pytest.mark.parametrize(
    "journal",
    [
        lines(lj.lease_record("l1", DAY), boot="another-boot"),  # the page cache may have lost records
        [b'["l","l1","team-cap","","day",0]'],  # no header: nothing says which boot wrote it
        lines(lj.lease_record("l1", DAY)) + [b'["r",1,30'],  # a torn line
        lines(lj.lease_record("l1", "team-cap"))[:1] + [b'["x",1]'],  # a record it does not know
        lines() + [b'["l","l1","team-cap","","year",0]'],  # a window that does not exist
    ],
)
def test_a_journal_that_cannot_vouch_for_every_record_proves_nothing(journal: list[bytes]) -> None:
    with pytest.raises(lj.Unproven):
        lj.fold(journal, BOOT)


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


def test_an_offline_lease_is_owed_its_spend_marked_offline_and_a_snapshot_keeps_the_mark() -> None:
    records = lines(
        lj.lease_record("l1", DAY),
        lj.lease_record("o1", DAY, offline=True),  # failMode static: opened by the sidecar itself
        lj.reserve_record(1, 4_000, ("o1",)),
        lj.reserve_record(2, 1_000, ("o1",)),
        lj.settle_record(1, 2_500),
    )
    state = fold(records)
    assert state.owed() == {"l1": (DAY, 0), "o1": (DAY, 2_500 + 1_000)}
    assert state.offline == {"o1"}
    again = fold(lj.snapshot(BOOT, state).splitlines())
    assert (again.owed(), again.offline) == (state.owed(), {"o1"})
    closed = fold([*records, *lines(lj.done_record("o1"))[1:]])
    assert closed.offline == set() and "o1" not in closed.owed()


def test_a_journal_written_before_offline_leases_were_journaled_reads_as_before() -> None:
    old = [b'["h","boot-1"]', b'["l","l1","team-cap","","day",700]', b'["r",1,300,"l1"]']
    state = fold(old)
    assert (state.owed(), state.offline) == ({"l1": (DAY, 1_000)}, set())
    with pytest.raises(lj.Unproven):  # a marker it does not know
        fold([*old, b'["l","l2","team-cap","","day",0,2]'])


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
        (b'["h","b"]\n["r",1,5,"l1"]\n' + b"\0" * 64, b'["h","b"]\n["r",1,5,"l1"]\n'),  # zeros past the end
        (b'["h","b"]\n["r",1,5,"l1"]\n["s",1', b'["h","b"]\n["r",1,5,"l1"]\n'),  # a copy cut short
        (b'["h","b"]\n["s",1' + b"\0\0" + b"5]\n" + b"\0" * 8, b'["h","b"]\n'),  # its end copied first
        (b'["h","b"]\n["r",1,5,"l1"]\n', b'["h","b"]\n["r",1,5,"l1"]\n'),  # written with write(2): whole
        (b"\0" * 4096, b""),
    ],
)
def test_only_whole_records_count_the_zeros_past_the_end_and_a_torn_last_record_do_not(
    data: bytes, records: bytes
) -> None:
    assert lj.written(data) == records
