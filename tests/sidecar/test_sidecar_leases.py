"""The sidecar's lease book (pure): local reservations, deadlines, slices, reports."""

from __future__ import annotations

from sluicegate_contract.authority import AccountView, LeaseGrant, ScopeRef, SyncReply
from sluicegate_sidecar.leases import LeaseBook, LeaseSettings

KEY = ("team-cap", "", "day")
SCOPE = ScopeRef(policy="team-cap", window="day")


def grant(
    lease_id: str = "l1", amount: int = 10_000, *, state="open", settled=0, remaining=90_000, holders=1
):
    account = AccountView(
        cap_micro_usd=100_000, settled_micro_usd=100_000 - remaining - amount, leased_micro_usd=amount,
        holders=holders,
    )  # fmt: skip
    return LeaseGrant(
        scope=SCOPE, lease_id=lease_id, state=state, amount_micro_usd=amount, settled_micro_usd=settled,
        ttl_ms=10_000, window_start="", window_end="", account=account,
    )  # fmt: skip


def test_requests_reserve_on_the_lease_until_its_deadline_on_the_monotonic_clock() -> None:
    book = LeaseBook(LeaseSettings(skew_margin=0.2))
    book.apply(SyncReply(leases=(grant(),)), sent_at=100.0)
    assert book.take((KEY,), 4_000, 100.5) is not None
    assert book.room(KEY, 100.5) == 6_000
    assert book.take((KEY,), 1, 108.0) is None  # 10 s TTL less 20 %, counted from when it asked
    assert book.shortfall(KEY, 1, 108.0) == "pending"


def test_a_lease_the_authority_expired_is_still_reported_final_so_its_charge_is_corrected() -> None:
    book = LeaseBook()
    book.apply(SyncReply(leases=(grant(),)), sent_at=0.0)
    taken = book.take((KEY,), 3_000, 1.0)
    assert taken is not None
    book.put(taken, 3_000, 1_200)
    book.recorded(taken, 3_000, 1_200)  # its ledger line written, the journal has it
    book.apply(SyncReply(leases=(grant(state="expired", settled=1_200),)), sent_at=2.0)  # all reported
    (ask,) = [a for a in book.asks(2.5) if a.lease_id == "l1"]
    assert (ask.final, ask.settled_micro_usd) == (True, 1_200)
    book.apply(SyncReply(leases=(grant(state="reconciled", settled=1_200),)), sent_at=2.5)
    assert not book.outstanding()


def test_a_slice_is_at_most_a_fair_share_of_what_remains() -> None:
    book = LeaseBook(LeaseSettings(share_divisor=4))
    book.apply(SyncReply(leases=(grant(amount=1_000, remaining=80_000, holders=4),)), sent_at=0.0)
    book.need((KEY,), 50_000, 0.1, 500)  # a burst waits for far more than its share
    (ask,) = book.asks(0.2)
    assert ask.want_micro_usd == (1_000 + 80_000) // 16 - 1_000
    assert ask.least_micro_usd == 500


def test_a_draining_sidecar_returns_what_is_not_in_flight_and_closes_idle_leases() -> None:
    book = LeaseBook()
    book.apply(SyncReply(leases=(grant(),)), sent_at=0.0)
    taken = book.take((KEY,), 2_000, 0.1)
    assert taken is not None
    book.draining = True
    (ask,) = book.asks(0.2)
    assert (ask.limit_micro_usd, ask.final) == (2_000, False)
    assert book.take((KEY,), 1, 0.3) is None  # the returned part is gone at once
    book.put(taken, 2_000, 700)
    book.recorded(taken, 2_000, 700)
    (ask,) = book.asks(0.4)
    assert (ask.settled_micro_usd, ask.final) == (700, True)


def test_a_kill_switch_from_the_authority_refuses_at_once() -> None:
    book = LeaseBook()
    book.apply(SyncReply(leases=(grant(),)), sent_at=0.0)
    killed = grant()
    killed = LeaseGrant(
        **{**{f: getattr(killed, f) for f in killed.__struct_fields__}, "refusal": "kill_switch", "ttl_ms": 0}
    )
    book.apply(SyncReply(leases=(killed,)), sent_at=1.0)
    assert book.shortfall(KEY, 0, 1.0) == "kill_switch"
    assert book.take((KEY,), 1, 1.0) is None
