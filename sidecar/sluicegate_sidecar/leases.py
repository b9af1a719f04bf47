"""The leases one sidecar holds from the budget authority, and what to ask for at the next sync.

Pure: no I/O; the monotonic clock is an argument. Requests reserve against the lease of each scope
locally (no network while it covers them); ``authorityclient`` syncs the book with the authority.
A lease is usable until its deadline: the sync's send time plus the granted TTL less a skew margin,
on the monotonic clock, so a wall clock set wrong on this node cannot stretch it (fault 16). With the
authority unreachable, a ``failMode: static`` policy falls back on a lease it opens (``staticallowance``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sluicegate_contract.authority import AccountView, LeaseAsk, Refusal, ScopeRef, SyncReply
from sluicegate_contract.schema import Budget
from sluicegate_contract.windows import WindowKind

from .staticallowance import Allowance, allowances, deadline, may_open

LeaseKey = tuple[str, str, WindowKind]  # (policy, split value or "", window kind)
Shortfall = Literal["kill_switch", "budget_exceeded", "budget_authority_unavailable", "pending"]
WORST_HALF_LIFE = 30.0  # seconds: how fast the largest recent reservation is forgotten


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    refresh_seconds: float = 1.0  # background sync period
    skew_margin: float = 0.2  # share of a TTL given up against clock rate error and delay
    near_cap_requests: int = 3  # below this many worst cases per holder left: one reservation a time
    share_divisor: int = 4  # a slice is at most remaining / (divisor * holders)


@dataclass(slots=True)
class HeldLease:
    key: LeaseKey
    lease_id: str
    amount: int
    deadline: float  # monotonic: nothing is reserved on it after this
    settled: int = 0  # cumulative, settled by this sidecar on it
    reserved: int = 0  # in flight
    # Settled, its settlement not in the journal yet (its ledger line is being written): counted at its
    # reservation until then, as a restart would report it: the journal never owes past the amount.
    pending: int = 0
    current: bool = True  # False: retired (expired, closed); only waits for its last report
    offline: bool = False  # opened by this sidecar under failMode static while the authority was away

    def room(self, mono: float) -> int:
        if not self.current or mono >= self.deadline:
            return 0
        return max(0, self.amount - self.settled - self.reserved - self.pending)


@dataclass(slots=True)
class ScopeState:
    lease: HeldLease | None = None
    account: AccountView | None = None
    unleased: int = 0  # ``account.remaining_micro_usd``, set with it (read by every request's looks)
    refusal: Refusal | None = None
    demand: float = 0.0  # micro-USD per second reserved lately (halved each quiet sync)
    taken: int = 0  # reserved since the last sync
    taken_since: float = 0.0
    worst_at: float = 0.0
    worst: int = 0  # the largest reservation seen lately
    needed: int = 0  # shortfall of requests waiting for a synchronous sync ...
    smallest: int = 0  # ... and the least of them that is still of use to one of those requests


def slice_want(state: ScopeState, room: int, settings: LeaseSettings) -> tuple[int, int, bool]:
    """(want, least, near cap) for a scope. The room to hold: enough for two refresh periods of
    demand and for the requests waiting, at most a fair share of what remains (one request's worth
    before the account is known); near the cap nothing ahead of need (each request asks for itself)."""
    account = state.account
    worst = max(state.worst, 1)
    least = state.smallest or worst
    if account is None:  # before the first answer: what the waiting requests need, no more
        want = max(0, worst - room, state.needed)
        return want, min(want, least), False
    holders = account.holders + (0 if state.lease is not None else 1)
    remaining = account.remaining_micro_usd
    if remaining < settings.near_cap_requests * worst * max(1, holders):
        want = max(0, state.needed)
        return want, min(want, least), True
    desired = max(worst, int(state.demand * settings.refresh_seconds * 2), room + state.needed)
    fair = (room + remaining) // (settings.share_divisor * max(1, holders))
    want = max(0, min(desired, max(worst, fair)) - room)
    return want, min(want, least), False


@dataclass
class LeaseBook:
    settings: LeaseSettings = field(default_factory=LeaseSettings)
    scopes: dict[LeaseKey, ScopeState] = field(default_factory=dict)
    held: dict[str, HeldLease] = field(default_factory=dict)  # every lease not yet reported closed
    unavailable: bool = False  # the last sync failed
    draining: bool = False  # shutting down: return what is not in flight, ask for nothing
    budgets: Callable[[], Sequence[Budget]] = tuple  # the config's policies (for failMode static)
    outage_used: set[LeaseKey] = field(default_factory=set)  # scopes given their allowance this outage
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    _seen: Sequence[Budget] = ()
    _allowances: dict[str, Allowance] = field(default_factory=dict)

    def _scope(self, key: LeaseKey) -> ScopeState:
        return self.scopes.get(key) or self.scopes.setdefault(key, ScopeState())

    def room(self, key: LeaseKey, mono: float) -> int:
        if self.unavailable:
            found = self.scopes.get(key)
            self._fall_back(key, mono, found.worst if found is not None else 0)
        state = self.scopes.get(key)
        return 0 if state is None else self.state_room(key, state, mono)

    def state_room(self, key: LeaseKey, state: ScopeState, mono: float) -> int:
        """``room`` of the scope ``state`` of ``key`` when the last sync was answered (no fall-back)."""
        lease = state.lease  # its room (``HeldLease.room``), inline: asked several times a request
        if lease is None or state.refusal == "kill_switch" or not lease.current or mono >= lease.deadline:
            return 0
        if lease.offline and self._allowance(key[0]) is None:  # the policy is no longer static
            return 0
        room = lease.amount - lease.settled - lease.reserved - lease.pending
        return room if room > 0 else 0

    def _allowance(self, policy: str) -> Allowance | None:
        budgets = self.budgets()
        if budgets is not self._seen:
            self._seen, self._allowances = budgets, allowances(budgets)
        return self._allowances.get(policy)

    def _fall_back(self, key: LeaseKey, mono: float, need: int) -> None:
        """failMode static: the authority does not answer and the scope's lease cannot cover ``need``:
        open this outage's lease of the policy's allowance in its place (``staticallowance``)."""
        allowance = self._allowance(key[0])
        state = self.scopes.get(key)
        lease = state.lease if state is not None else None
        if allowance is None or not may_open(
            allowance,
            unavailable=self.unavailable,
            draining=self.draining,
            used_this_outage=key in self.outage_used,
            lease_room=lease.room(mono) if lease is not None else 0,
            need=need,
            account=state.account if state is not None else None,
            refusal=state.refusal if state is not None else None,
        ):
            return
        state = self._scope(key)
        if lease is not None:
            lease.current = False  # reported final, with what it did not spend, once the authority is back
        offline = HeldLease(key, self.new_id(), allowance.amount, deadline(allowance, mono), offline=True)
        self.held[offline.lease_id] = state.lease = offline
        self.outage_used.add(key)

    def fleet_room(self, key: LeaseKey, mono: float) -> int | None:
        """This sidecar's room plus what the account had unleased at the last sync (an estimate for
        verdicts and the remaining-budget header, never for admission); None before an answer."""
        state = self.scopes.get(key)
        if state is None or state.account is None:
            return None
        if state.refusal == "kill_switch":
            return 0
        room = self.room(key, mono) if self.unavailable else self.state_room(key, state, mono)
        return room + state.unleased

    def shortfall(self, key: LeaseKey, amount: int, mono: float) -> Shortfall | None:
        """Why ``amount`` does not fit the scope's lease now (None: it fits)."""
        state = self.scopes.get(key)
        if state is not None and state.refusal == "kill_switch":
            return "kill_switch"
        if self.unavailable:
            self._fall_back(key, mono, amount)
        if self.room(key, mono) >= amount:
            return None
        if self.unavailable:
            return "budget_authority_unavailable"
        if state is not None and (state.refusal is not None or state.account is not None):
            account = state.account
            if state.refusal is not None or (account is not None and account.remaining_micro_usd < amount):
                return "budget_exceeded"
        return "pending"

    def worth_waiting(self, keys: tuple[LeaseKey, ...], need: int, mono: float) -> bool:
        """True when ``need`` does not fit some key now, yet leases are out on its account (their
        requests in flight settle, usually for less than reserved, and near the cap come back)."""
        if self.unavailable:
            return False
        short = False
        for key in keys:
            if self.room(key, mono) >= need:
                continue
            state = self.scopes.get(key)
            if state is None or state.account is None or state.refusal == "kill_switch":
                return False
            if state.account.leased_micro_usd == 0:
                return False
            short = True
        return short

    def note_demand(self, keys: tuple[LeaseKey, ...], amount: int, mono: float) -> None:
        """A request of ``amount`` wants the scopes: the slice is at least the largest lately."""
        for key in keys:
            _note_worst(self._scope(key), amount, mono)

    def need(self, keys: tuple[LeaseKey, ...], amount: int, mono: float, least: int = 0) -> None:
        """A request waits for ``amount`` (of use from ``least``) on each of ``keys``: ask at the
        next sync."""
        for key in keys:
            state = self._scope(key)
            short = max(0, amount - self.room(key, mono))
            state.needed += short
            useful = max(1, min(short, least or short))
            state.smallest = useful if state.smallest == 0 else min(state.smallest, useful)

    def take(self, keys: tuple[LeaseKey, ...], amount: int, mono: float) -> tuple[str, ...] | None:
        """Reserve ``amount`` on the lease of every key, or on none; returns the lease ids."""
        if any(self.room(key, mono) < amount for key in keys):
            return None
        found = []
        for key in keys:
            state = self.scopes.get(key)
            if state is not None and state.lease is not None:
                found.append((state, state.lease))  # no lease: only a reservation of 0, holding nothing
        return _hold(found, amount)

    def take_now(self, keys: tuple[LeaseKey, ...], amount: int, mono: float) -> tuple[str, ...] | None:
        """``note_demand`` and ``take`` in one pass when the last sync was answered, no key is under a kill
        switch and every lease covers ``amount``; else None, nothing changed (then ``shortfall`` says why)."""
        if self.unavailable:
            return None
        found = []
        for key in keys:  # ``_room`` inline: a lease of the authority's, current, covering ``amount``
            state = self.scopes.get(key)
            if state is None or state.refusal == "kill_switch":
                return None
            lease = state.lease
            if lease is None or lease.offline or not lease.current or mono >= lease.deadline:
                return None
            if amount and lease.amount - lease.settled - lease.reserved - lease.pending < amount:
                return None
            found.append((state, lease))
        for state, _ in found:
            _note_worst(state, amount, mono)
        return _hold(found, amount)

    def put(self, lease_ids: tuple[str, ...], amount: int, actual: int) -> None:
        """Settle a reservation of ``amount`` on those leases at ``actual`` (0: released)."""
        for lease_id in lease_ids:
            lease = self.held.get(lease_id)
            if lease is not None:
                lease.reserved -= amount
                lease.settled += actual
                lease.pending += amount - actual if amount > actual else 0

    def recorded(self, lease_ids: tuple[str, ...], amount: int, actual: int) -> None:
        """The journal has recorded that settlement: the rest of its reservation is free."""
        for lease_id in lease_ids:
            lease = self.held.get(lease_id)
            if lease is not None:
                lease.pending -= amount - actual if amount > actual else 0

    def asks(self, mono: float) -> tuple[LeaseAsk, ...]:
        """What to send at a sync: every lease's cumulative spend, top-ups ahead of need, returns."""
        asks: list[LeaseAsk] = []
        for state in self.scopes.values():  # demand: what was reserved since the last sync, per second
            elapsed = mono - state.taken_since
            if elapsed > 0:
                rate = state.taken / max(elapsed, self.settings.refresh_seconds / 4)
                state.demand, state.taken, state.taken_since = max(rate, state.demand / 2), 0, mono
        for lease in self.held.values():
            state = self._scope(lease.key)
            if lease.current and mono >= lease.deadline:
                lease.current = False  # expired here: the authority charges it unless reported
                state.lease = None if state.lease is lease else state.lease
            scope = ScopeRef(policy=lease.key[0], split=lease.key[1], window=lease.key[2])
            if lease.offline:  # its spend, to be recorded; never grown, never lowered
                final = (not lease.current or self.draining) and lease.reserved + lease.pending == 0
                asks.append(_offline_ask(scope, lease, final))
                continue
            if not lease.current or self.draining:  # return what is not in flight; close when idle
                held = lease.settled + lease.reserved + lease.pending
                asks.append(_ask(scope, lease, held, 0, 0, lease.reserved + lease.pending == 0))
                continue
            want, least, near = slice_want(state, lease.room(mono), self.settings)
            limit = lease.amount
            if near:  # hold nothing idle: what is not in flight goes back for whoever asks next
                limit = lease.settled + lease.reserved + lease.pending
            asks.append(_ask(scope, lease, limit, want, least, False))
        if not self.draining:
            for key, state in self.scopes.items():
                if state.lease is not None or (state.needed == 0 and state.demand < 1.0):
                    continue
                want, least, _ = slice_want(state, 0, self.settings)
                if want > 0:
                    scope = ScopeRef(policy=key[0], split=key[1], window=key[2])
                    asks.append(LeaseAsk(scope=scope, want_micro_usd=want, least_micro_usd=least))
        return tuple(asks)

    def apply(self, reply: SyncReply, sent_at: float) -> None:
        """Adopt the authority's answer to a sync sent at ``sent_at`` (monotonic)."""
        self.unavailable = False
        if self.outage_used:
            self._end_outage()
        for grant in reply.leases:
            key: LeaseKey = (grant.scope.policy, grant.scope.split, grant.scope.window)
            state = self._scope(key)
            state.account = account = grant.account or state.account
            state.unleased = 0 if account is None else account.remaining_micro_usd
            lease = self.held.get(grant.lease_id) if grant.lease_id is not None else None
            if grant.state == "open" or grant.lease_id is None or grant.refusal == "kill_switch":
                state.refusal, state.needed, state.smallest = grant.refusal, 0, 0  # answered
            if grant.lease_id is None:
                continue
            if grant.state != "open":
                if lease is not None:
                    lease.current = False
                    if state.lease is lease:
                        state.lease = None
                    done = grant.state != "expired"  # an expired one still gets its final report
                    if done and lease.reserved == 0 and lease.settled <= grant.settled_micro_usd:
                        del self.held[grant.lease_id]  # closed and fully reported
                continue
            deadline = sent_at + grant.ttl_ms / 1000 * (1 - self.settings.skew_margin)
            if lease is None:
                lease = HeldLease(key, grant.lease_id, grant.amount_micro_usd, deadline)
                self.held[grant.lease_id] = lease
                if state.lease is not None and state.lease is not lease:
                    state.lease.current = False
                state.lease = lease
            else:
                lease.amount, lease.deadline = grant.amount_micro_usd, deadline
                if lease.current and state.lease is None:
                    state.lease = lease

    def _end_outage(self) -> None:
        """The authority answers again: offline leases are only reported from now on."""
        self.outage_used.clear()
        for held in self.held.values():
            if held.offline and held.current:
                held.current = False
                found = self.scopes.get(held.key)
                if found is not None and found.lease is held:
                    found.lease = None

    def rooms(self, mono: float) -> dict[tuple[str, WindowKind], int]:
        """Lease room per policy and window, summed over split values (for metrics)."""
        totals: dict[tuple[str, WindowKind], int] = {}
        for key, state in self.scopes.items():  # no fall-back
            totals[key[0], key[2]] = totals.get((key[0], key[2]), 0) + self.state_room(key, state, mono)
        return totals

    def failed(self) -> None:
        self.unavailable = True

    def outstanding(self) -> bool:
        """True while a lease is held that the authority has not seen closed."""
        return bool(self.held)


def _note_worst(state: ScopeState, amount: int, mono: float) -> None:
    """The largest reservation lately; a smaller one once the largest decayed below it (looked at 1/s)."""
    if amount >= state.worst:
        state.worst, state.worst_at = amount, mono
    elif mono - state.worst_at >= 1.0:
        decayed = int(state.worst * 0.5 ** ((mono - state.worst_at) / WORST_HALF_LIFE))
        state.worst, state.worst_at = max(amount, decayed), mono


def _hold(found: list[tuple[ScopeState, HeldLease]], amount: int) -> tuple[str, ...]:
    """Reserve ``amount`` on each lease (checked to fit); returns their ids."""
    for state, lease in found:
        lease.reserved += amount
        state.taken += amount
    return tuple([lease.lease_id for _, lease in found])


def _ask(scope: ScopeRef, lease: HeldLease, limit: int, want: int, least: int, final: bool) -> LeaseAsk:
    # Lowered here, before the ask leaves: a reservation made while it is in flight must fit the
    # lower amount the authority may already have applied.
    lease.amount = min(lease.amount, limit)
    return LeaseAsk(
        scope=scope,
        lease_id=lease.lease_id,
        settled_micro_usd=lease.settled,
        limit_micro_usd=limit,
        want_micro_usd=want,
        least_micro_usd=least,
        final=final,
    )


def _offline_ask(scope: ScopeRef, lease: HeldLease, final: bool) -> LeaseAsk:
    return LeaseAsk(
        scope=scope,
        lease_id=lease.lease_id,
        settled_micro_usd=lease.settled,
        limit_micro_usd=lease.amount,
        final=final,
        offline=True,
    )
