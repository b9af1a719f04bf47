"""Property test of the fleet's lease arithmetic: sidecars' lease books against the authority's rules.

Random interleavings of reserve / settle (under, at and over the reservation) / sync (replies lost
or not) / time passing (sidecar clocks running fast or slow) / expiry / drain / crash (the volume
lost) / crash and restart on the volume (the lease journal's debts reported final) never let the
fleet's accounts pass ``settled + leased ≤ cap`` (short of price error) nor let real spend pass it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sluicegate_contract.authority import AccountView, LeaseAsk, LeaseGrant, ScopeRef, SyncReply
from sluicegate_contract.leases import Account, Lease, contribution, expired, moved, synced
from sluicegate_sidecar.leasejournal import JournalState, adopt
from sluicegate_sidecar.leases import LeaseBook, LeaseKey, LeaseSettings

TTL = 10.0
KEYS: tuple[LeaseKey, ...] = (("team-cap", "", "day"), ("team-cap", "", "month"))


@dataclass
class Record:
    key: LeaseKey
    owner: str
    lease: Lease
    deadline: float
    true_spend: int = 0


@dataclass
class Sidecar:
    name: str
    book: LeaseBook
    rate: float  # its monotonic clock's speed against the authority's
    offset: float
    inflight: list[tuple[tuple[str, ...], int]] = field(default_factory=list)  # (leases, amount)
    # its lease journal (kept on its volume); a slot for every lease the run can open
    journal: JournalState = field(default_factory=lambda: JournalState.empty(1_000))
    # settled, ledger line pending: (actual, amount, lease ids)
    unjournaled: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)


def restarted(old: Sidecar) -> Sidecar:
    """The same sidecar id on the same volume, a new process: its book adopts the journal's debts."""
    new = Sidecar(old.name, LeaseBook(LeaseSettings(refresh_seconds=1.0)), 1.0, offset=old.offset + 1_000)
    owed = old.journal.owed()
    adopt(new.book, owed)
    for lease_id, (key, spent) in owed.items():  # the new process's journal starts from them
        new.journal.lease(lease_id, key, spent)
    return new


class Fleet(RuleBasedStateMachine):
    @initialize(cap=st.integers(0, 20_000), sidecars=st.integers(1, 4))
    def start(self, cap: int, sidecars: int) -> None:
        self.now = 0.0
        self.cap = cap
        self.accounts = {key: Account(cap) for key in KEYS}
        self.records: dict[str, Record] = {}
        self.ids = itertools.count(1)
        self.excess = 0  # settled above what was reserved: price-catalog error
        self.unreported = 0  # ... of which a restart could not see (its ledger line was not written)
        self.sidecars = [self._new_sidecar(1.0) for _ in range(sidecars)]

    def _new_sidecar(self, rate: float) -> Sidecar:
        name = f"sidecar-{next(self.ids)}"
        book = LeaseBook(LeaseSettings(refresh_seconds=1.0))
        return Sidecar(name, book, rate, offset=float(next(self.ids)) * 7)

    def _mono(self, sidecar: Sidecar) -> float:
        return sidecar.offset + self.now * sidecar.rate

    def _handle(self, owner: str, ask: LeaseAsk) -> LeaseGrant:
        key: LeaseKey = (ask.scope.policy, ask.scope.split, ask.scope.window)
        record = self.records.get(ask.lease_id) if ask.lease_id else None
        lease = None
        if record is not None:
            assert record.owner == owner
            lease = record.lease
            if lease.state == "open" and record.deadline <= self.now:  # due: expire it first
                self.accounts[key] = moved(self.accounts[key], lease, expired(lease))
                lease = record.lease = expired(lease)
        out = synced(
            self.accounts[key],
            lease,
            settled=ask.settled_micro_usd,
            limit=ask.limit_micro_usd,
            want=ask.want_micro_usd,
            least=ask.least_micro_usd,
            final=ask.final,
        )
        self.accounts[key] = out.account
        lease_id = ask.lease_id
        if out.lease is not None:
            if record is None:
                lease_id = f"lease-{next(self.ids)}"
                record = self.records[lease_id] = Record(key, owner, out.lease, 0.0)
            record.lease = out.lease
            if out.lease.state == "open":
                record.deadline = self.now + TTL
        acct = out.account
        view = AccountView(
            cap_micro_usd=acct.cap, settled_micro_usd=acct.settled, leased_micro_usd=acct.leased, holders=1
        )
        return LeaseGrant(
            scope=ask.scope,
            lease_id=lease_id if out.lease is not None else None,
            state=out.lease.state if out.lease else "closed",
            amount_micro_usd=out.lease.amount if out.lease else 0,
            settled_micro_usd=out.lease.reported if out.lease else 0,
            ttl_ms=int(TTL * 1000),
            window_start="2026-12-06T00:00:00Z",
            window_end="2026-12-07T00:00:00Z",
            account=view,
            refusal="budget_exceeded" if ask.want_micro_usd and not out.granted else None,
        )

    @rule(i=st.integers(0, 3), amount=st.integers(1, 3_000), both=st.booleans(), fit=st.booleans())
    def reserve(self, i: int, amount: int, both: bool, fit: bool) -> None:
        """``fit``: no more than the leases hold (as a request clamped to its headroom)."""
        sidecar = self.sidecars[i % len(self.sidecars)]
        keys = KEYS if both else KEYS[:1]
        mono = self._mono(sidecar)
        if fit:
            amount = max(1, min(amount, *(sidecar.book.room(key, mono) for key in keys)))
        sidecar.book.note_demand(keys, amount, mono)
        taken = sidecar.book.take(keys, amount, mono)
        if taken is None:
            sidecar.book.need(keys, amount, mono)
        else:
            sidecar.journal.reserve(taken, amount)  # journaled before it goes upstream
            sidecar.inflight.append((taken, amount))

    @rule(i=st.integers(0, 3), j=st.integers(0, 50), share=st.integers(0, 100), over=st.integers(0, 50))
    def settle(self, i: int, j: int, share: int, over: int) -> None:
        sidecar = self.sidecars[i % len(self.sidecars)]
        if not sidecar.inflight:
            return
        taken, amount = sidecar.inflight.pop(j % len(sidecar.inflight))
        actual = amount * share // 100 + (over if share == 100 else 0)
        self.excess += max(0, actual - amount)
        sidecar.book.put(taken, amount, actual)
        if actual == 0:
            sidecar.journal.settle(taken, amount, 0)  # released: no ledger line to wait for
            sidecar.book.recorded(taken, amount, 0)
        else:
            sidecar.unjournaled.append((actual, amount, taken))
        for lease_id in taken:
            self.records[lease_id].true_spend += actual

    @rule(i=st.integers(0, 3), j=st.integers(0, 50))
    def ledger_written(self, i: int, j: int) -> None:
        """A settled request's ledger line is written: the journal records its settlement."""
        sidecar = self.sidecars[i % len(self.sidecars)]
        if sidecar.unjournaled:
            actual, amount, taken = sidecar.unjournaled.pop(j % len(sidecar.unjournaled))
            sidecar.journal.settle(taken, amount, actual)
            sidecar.book.recorded(taken, amount, actual)

    @rule(i=st.integers(0, 3), lose_reply=st.booleans())
    def sync(self, i: int, lose_reply: bool) -> None:
        sidecar = self.sidecars[i % len(self.sidecars)]
        sent_at = self._mono(sidecar)
        asks = sidecar.book.asks(sent_at)
        reply = SyncReply(leases=tuple(self._handle(sidecar.name, ask) for ask in asks))
        if lose_reply:
            sidecar.book.failed()
        else:
            before = set(sidecar.book.held)
            sidecar.book.apply(reply, sent_at)
            for lease_id, lease in sidecar.book.held.items():
                if lease_id not in before:
                    sidecar.journal.lease(lease_id, lease.key)
            for lease_id in before.difference(sidecar.book.held):
                sidecar.journal.done(lease_id)

    @rule(seconds=st.floats(0, 6), i=st.integers(0, 3), rate=st.floats(0.85, 1.15))
    def time_passes(self, seconds: float, i: int, rate: float) -> None:
        sidecar = self.sidecars[i % len(self.sidecars)]
        reading = self._mono(sidecar)  # its clock runs fast or slow from here on, still monotonic
        sidecar.rate, sidecar.offset = rate, reading - self.now * rate
        self.now += seconds

    @rule()
    def authority_expires_leases(self) -> None:
        for record in self.records.values():
            if record.lease.state == "open" and record.deadline <= self.now:
                before = record.lease
                record.lease = expired(before)
                self._recount(record.key)

    def _recount(self, key: LeaseKey) -> None:
        settled = leased = 0
        for record in self.records.values():
            if record.key == key:
                part_settled, part_leased = contribution(record.lease)
                settled, leased = settled + part_settled, leased + part_leased
        self.accounts[key] = Account(self.cap, settled, leased)

    @rule(i=st.integers(0, 3))
    def drain(self, i: int) -> None:
        self.sidecars[i % len(self.sidecars)].book.draining = True

    @rule(i=st.integers(0, 3))
    def crash(self, i: int) -> None:
        """kill -9: requests in flight may have cost everything they reserved, and no one reports."""
        index = i % len(self.sidecars)
        for taken, amount in self.sidecars[index].inflight:
            for lease_id in taken:
                self.records[lease_id].true_spend += amount
        self.sidecars[index] = self._new_sidecar(1.0)

    @rule(i=st.integers(0, 3))
    def crash_and_restart_on_the_volume(self, i: int) -> None:
        """kill -9, then the same sidecar id starts again: it adopts what its journal says each old
        lease owes (settled plus open reservations at their amount) and reports it final."""
        index = i % len(self.sidecars)
        old = self.sidecars[index]
        for taken, amount in old.inflight:
            for lease_id in taken:
                self.records[lease_id].true_spend += amount
        self.unreported += sum(max(0, actual - amount) for actual, amount, _ in old.unjournaled)
        self.sidecars[index] = restarted(old)

    @invariant()
    def accounts_match_their_leases(self) -> None:
        for key in KEYS:
            expected = self.accounts[key]
            self._recount(key)
            assert self.accounts[key] == expected

    @invariant()
    def settled_and_leased_stay_within_the_cap(self) -> None:
        for key in KEYS:
            account = self.accounts[key]
            assert account.settled + account.leased <= self.cap + self.excess

    @invariant()
    def every_lease_is_charged_at_least_what_it_cost(self) -> None:
        """Closed (returned, or reported final after a restart) at no less than its real spend, short
        of price error the report could not see; open or expired, its amount holds it."""
        for record in self.records.values():
            settled, leased = contribution(record.lease)
            slack = self.unreported if record.lease.state in ("closed", "reconciled") else self.excess
            assert record.true_spend <= settled + leased + slack

    @invariant()
    def real_spend_stays_within_what_the_accounts_hold(self) -> None:
        for key in KEYS:
            spent = sum(r.true_spend for r in self.records.values() if r.key == key)
            account = self.accounts[key]
            # Short of what the accounts hold only by price-catalog error (a settlement above its
            # reservation): not reported yet (the next sync carries it), or reported short by a
            # restart (reservations whose ledger line was not written count at their amount).
            assert spent <= account.settled + account.leased + self.excess
            assert spent <= self.cap + self.excess


Fleet.TestCase.settings = settings(max_examples=500, stateful_step_count=60, deadline=None)
test_random_interleavings_never_break_the_fleet_cap = Fleet.TestCase


def test_a_lease_returned_near_the_cap_is_not_spent_when_the_reply_is_lost() -> None:
    """Near the cap the sidecar hands back what is not in flight; if that sync's reply never comes,
    the authority may already have given the returned part to another sidecar."""
    book = LeaseBook(LeaseSettings())
    key = KEYS[0]
    scope = ScopeRef(policy=key[0], split=key[1], window="day")
    view = AccountView(cap_micro_usd=1_000, settled_micro_usd=0, leased_micro_usd=1_000, holders=1)
    grant = LeaseGrant(
        scope=scope,
        lease_id="l1",
        state="open",
        amount_micro_usd=1_000,
        settled_micro_usd=0,
        ttl_ms=10_000,
        window_start="",
        window_end="",
        account=view,
    )
    book.apply(SyncReply(leases=(grant,)), sent_at=0.0)
    book.note_demand((key,), 400, 0.1)
    taken = book.take((key,), 400, 0.1)
    assert taken is not None
    (ask,) = book.asks(0.2)  # near the cap: keep only what is in flight
    assert ask.limit_micro_usd == 400
    book.failed()  # the reply is lost
    assert book.take((key,), 1, 0.3) is None


def test_a_restart_reports_what_was_in_flight_at_the_kill_so_no_lease_is_charged_less_than_it_cost() -> None:
    fleet = Fleet()
    fleet.start(cap=20_000, sidecars=1)
    fleet.reserve(0, 1_000, both=False, fit=False)  # no lease yet: asks for one
    fleet.sync(0, lose_reply=False)
    fleet.reserve(0, 1_000, both=False, fit=False)  # reserved, sent upstream
    fleet.crash_and_restart_on_the_volume(0)  # killed with it in flight; it may have cost it all
    fleet.sync(0, lose_reply=False)  # the restarted process reports the old lease final
    ((record),) = fleet.records.values()
    assert (record.lease.state, record.lease.reported, record.true_spend) == ("closed", 1_000, 1_000)
    fleet.every_lease_is_charged_at_least_what_it_cost()
    fleet.settled_and_leased_stay_within_the_cap()


def test_room_a_settlement_frees_waits_for_its_journal_record_so_a_restart_never_owes_past_the_lease() -> (
    None
):
    """Found by the state machine: a reservation settled far below its worst case, its journal record
    not written yet (its ledger line is being written), then another reservation on the room it freed,
    then a kill: the journal counted the first at its worst case plus the second, past what the lease
    held, and the restart reported the account over its cap (101 on a cap of 100)."""
    fleet = Fleet()
    fleet.start(cap=100, sidecars=1)
    fleet.reserve(0, 100, both=False, fit=False)  # no lease yet: asks for one
    fleet.sync(0, lose_reply=False)
    fleet.reserve(0, 100, both=False, fit=False)
    fleet.settle(0, 0, share=1, over=0)  # it cost 1; the journal does not know yet
    fleet.reserve(0, 1, both=False, fit=False)  # the 99 it freed are not room until then
    assert not fleet.sidecars[0].inflight
    fleet.ledger_written(0, 0)  # now they are
    fleet.reserve(0, 1, both=False, fit=False)
    assert len(fleet.sidecars[0].inflight) == 1
    fleet.crash_and_restart_on_the_volume(0)
    fleet.sync(0, lose_reply=False)
    fleet.settled_and_leased_stay_within_the_cap()
    fleet.every_lease_is_charged_at_least_what_it_cost()


def test_a_settlement_above_its_reservation_is_price_error_until_the_next_sync_reports_it() -> None:
    """Found by the state machine (CI, 2026-12-07): a request settled above its reservation (the
    price catalog was short) on an open lease: the fleet's real spend passes what the account holds
    by that error until the next sync reports the lease's settled spend. The invariant allowed it
    only after a restart; it is the price-catalog error the money promise allows at any time."""
    fleet = Fleet()
    fleet.start(cap=1, sidecars=1)
    fleet.reserve(0, 1, both=False, fit=False)  # no lease yet: asks for one
    fleet.sync(0, lose_reply=False)
    fleet.reserve(0, 1, both=False, fit=False)
    fleet.settle(0, 0, share=100, over=1)  # it cost 2 on a reservation of 1
    assert fleet.excess == 1
    fleet.real_spend_stays_within_what_the_accounts_hold()
    fleet.every_lease_is_charged_at_least_what_it_cost()
