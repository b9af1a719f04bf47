"""Budget bookkeeping: scopes, calendar windows, reservations, settlement and verdicts, in integer micro-USD.

Pure: no I/O and no clock (time is an argument). All budget arithmetic lives here and in ``ladder``.
State (spent and reserved per scope) lives in one ``BudgetBook`` built at startup and passed down.
Its values are in ``budgettypes`` (re-exported here), a policy's fixed parts in ``budgetplan``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sluicegate_contract.ladder import Verdict, outranks
from sluicegate_contract.schema import Budget, Limit
from sluicegate_contract.windows import WindowKind, window_bounds

from .attribution import Attribution
from .budgetplan import (
    UNATTRIBUTED,
    Plan,
    RequestScopes,
    plan_of,
    request_scopes,
    selects,
    split_dimensions,
    split_of,
    validate,
)
from .budgettypes import Charge, Decision, Refusal, RefusalReason, Reservation, ScopeStatus
from .fleetroom import FleetRoom
from .ladder import Scope, ScopeKey, room_left, verdict_at

__all__ = [
    "UNATTRIBUTED",
    "BudgetBook",
    "Charge",
    "Decision",
    "Refusal",
    "RefusalReason",
    "Reservation",
    "ScopeStatus",
]


SCOPE_CACHE = 16_384  # scopes remembered by Pod and split values (~300 bytes each: ~5 MiB at most)


@dataclass(slots=True)
class _Tally:
    end: datetime
    spent: int = 0
    reserved: int = 0


class BudgetBook:
    """Spent and reserved micro-USD per scope, for one sidecar; every operation is atomic.

    A request is charged to every scope of every policy whose selector matches its Pod: one scope per
    limit (window) and split value. Reservations are all-or-nothing over Enforce scopes; Shadow scopes
    record spend but never refuse. A reservation is charged to the windows open when it was made.
    """

    def __init__(self, budgets: Sequence[Budget]) -> None:
        validate(budgets)
        self._plans = tuple(plan_of(budget) for budget in budgets)
        self._tallies: dict[ScopeKey, _Tally] = {}
        self._open: dict[int, Reservation] = {}
        self._last_id = 0
        self._bounds: dict[tuple[WindowKind, str], tuple[datetime, datetime]] = {}
        self._split_by = split_dimensions(self._plans)
        # Scopes recently asked for, by what they depend on (the Pod and the values of the dimensions
        # the policies split by), while their windows stay open: a request asks up to four times
        # (decide, headroom, reserve, the reply's remaining), the requests in flight at once each keep
        # theirs between those, and the next request from the same Pod with the same split values
        # (all of them, when no policy splits) gets the same list. At most ``SCOPE_CACHE`` entries, the
        # oldest dropped first, one at a time (no pause to clear thousands at once).
        self._scope_cache: OrderedDict[tuple[int, tuple[str | None, ...]], RequestScopes] = OrderedDict()
        self._last: tuple[Attribution, RequestScopes] | None = None  # the last one looked up, by request
        self.fleet: FleetRoom | None = None  # set in fleet mode (``--budget-authority``)

    def replace_budgets(self, budgets: Sequence[Budget]) -> None:
        """Swap in a new config's policies; spend is kept per policy name and window."""
        validate(budgets)
        self._plans = tuple(plan_of(budget) for budget in budgets)
        self._split_by = split_dimensions(self._plans)
        self._scope_cache.clear()
        self._last = None

    def _window(self, limit: Limit, now: datetime) -> tuple[datetime, datetime]:
        cache_key = (limit.window, limit.timezone)
        bounds = self._bounds.get(cache_key)
        if bounds is None or not bounds[0] <= now < bounds[1]:
            bounds = window_bounds(limit.window, limit.timezone, now)
            self._bounds[cache_key] = bounds
            self._prune(now)
        return bounds

    def _prune(self, now: datetime) -> None:
        closed = [key for key, tally in self._tallies.items() if tally.end <= now and tally.reserved == 0]
        for key in closed:
            del self._tallies[key]

    def _policy_scopes(self, plan: Plan, split: str, now: datetime) -> list[Scope]:
        """One scope per window; two limits on the same window share it and the smaller cap wins."""
        scopes = []
        budget = plan.budget
        shadow = budget.mode == "Shadow"
        for limit, cap, calm in plan.limits:
            start, end = self._window(limit, now)
            key = ScopeKey(budget.name, split, limit.window, start)
            scopes.append(Scope(key, end, budget, limit.amount_micro_usd, cap, shadow, calm))
        if not plan.shared_windows:
            return scopes
        unique: dict[ScopeKey, Scope] = {}
        for scope in scopes:
            if scope.key not in unique or scope.cap_micro_usd < unique[scope.key].cap_micro_usd:
                unique[scope.key] = scope
        return list(unique.values())

    def enforcing(self, attribution: Attribution, now: datetime) -> tuple[Scope, ...]:
        """The Enforce scopes a request is charged to, in policy order."""
        return self._scopes(attribution, now).enforcing

    def _scopes(self, attribution: Attribution, now: datetime) -> RequestScopes:
        last = self._last  # the same request asking again (the common case at low concurrency)
        if last is not None and last[0] is attribution and last[1].opened <= now < last[1].closes:
            return last[1]
        pod, dimensions = attribution.pod, attribution.dimensions
        key = (id(pod), tuple(map(dimensions.get, self._split_by)))
        found = self._scope_cache.get(key)
        if found is None or found.pod is not pod or not found.opened <= now < found.closes:
            scopes: list[Scope] = []  # none cached, or a window closed since
            for plan in self._plans:
                if selects(plan.selector, pod.labels):
                    scopes.extend(self._policy_scopes(plan, split_of(plan.budget, dimensions), now))
            if len(self._scope_cache) >= SCOPE_CACHE:
                self._scope_cache.popitem(last=False)
            found = self._scope_cache[key] = request_scopes(pod, scopes)
        self._last = (attribution, found)
        return found

    def _used(self, key: ScopeKey) -> int:
        tally = self._tallies.get(key)
        return 0 if tally is None else tally.spent + tally.reserved

    def _scope_used(self, scope: Scope) -> int:
        """Spent and reserved on the scope: in fleet mode the fleet's, as the last sync saw it."""
        if self.fleet is not None and not scope.shadow:
            room = self.fleet.fleet_room(scope.key)
            if room is not None:
                return max(0, scope.cap_micro_usd - room)
        return self._used(scope.key)

    def _room(self, scope: Scope) -> int:
        """What a reservation may take on the scope now (in fleet mode: its lease)."""
        if self.fleet is not None and not scope.shadow:
            return 0 if scope.budget.kill_switch else self.fleet.room(scope.key)
        return room_left(scope, self._used(scope.key))

    def enforce_keys(self, attribution: Attribution, now: datetime) -> tuple[ScopeKey, ...]:
        """The Enforce scopes a request is charged to (the leases it needs in fleet mode)."""
        return self._scopes(attribution, now).enforce

    def decide(self, attribution: Attribution, now: datetime) -> Decision:
        """The verdict for a request from the current state (no reservation made)."""
        action: Verdict = "allow"
        shadow_action: Verdict = "allow"
        deciding: Scope | None = None
        shadow_deciding: Scope | None = None
        remaining: int | None = None
        fleet = self.fleet
        for scope in self._scopes(attribution, now).scopes:
            if fleet is None or scope.shadow:
                used = self._used(scope.key)
                verdict = verdict_at(scope, used)
            else:  # the fleet's room as the last sync saw it, in one look
                fleet_room, killed = fleet.standing(scope.key)
                if fleet_room is None:  # before the first sync: this sidecar's own tallies
                    used = self._used(scope.key)
                else:
                    used = max(0, scope.cap_micro_usd - fleet_room)
                # KILL: the authority has seen a kill switch this sidecar's config may lack yet
                verdict = "KILL" if killed else verdict_at(scope, used)
            if scope.shadow:
                if verdict != "allow" and outranks(verdict, shadow_action):
                    shadow_action, shadow_deciding = verdict, scope
                continue
            room = room_left(scope, used)
            remaining = room if remaining is None or room < remaining else remaining
            if verdict != "allow" and outranks(verdict, action):
                action, deciding = verdict, scope
        return Decision(
            action=action,
            policy=deciding.key.policy if deciding else None,
            downgrade_to=deciding.budget.downgrade_to if deciding and action == "DOWNGRADE" else None,
            remaining_micro_usd=remaining,
            shadow_action=shadow_action,
            shadow_policy=shadow_deciding.key.policy if shadow_deciding else None,
        )

    def headroom(self, attribution: Attribution, now: datetime) -> int | None:
        """The most a request may reserve now (least room over Enforce scopes); None when unlimited. Any
        ``reserve`` of at most this much succeeds (short of an unpriced model): clamp the output cap
        with ``pricing.max_output_tokens_within`` to it."""
        least: int | None = None  # a loop: a third faster than ``min`` over a generator or a map
        for scope in self._scopes(attribution, now).enforcing:
            room = self._room(scope)
            if least is None or room < least:
                least = room
        return least

    def remaining(self, attribution: Attribution, now: datetime) -> int | None:
        """What the request's Enforce scopes have left (the least; in fleet mode the fleet's, as the last
        sync saw it, not this sidecar's lease): the remaining-budget header, never admission."""
        least: int | None = None
        for scope in self._scopes(attribution, now).enforcing:
            room = room_left(scope, self._scope_used(scope))
            if least is None or room < least:
                least = room
        return least

    def _refusal(self, scope: Scope, amount: int, priced: bool) -> Refusal | None:
        budget = scope.budget
        used = self._scope_used(scope)
        room = room_left(scope, used)
        if budget.kill_switch:
            return Refusal("KILL", "kill_switch", budget.name, scope.label, 0)
        if not priced and not budget.allow_unpriced:
            return Refusal("BLOCK", "pricing_unknown", budget.name, scope.label, room)
        fleet = None if scope.shadow else self.fleet
        if fleet is not None:
            short = fleet.shortfall(scope.key, amount)
            if short is None:
                return None
            if short == "kill_switch":
                return Refusal("KILL", "kill_switch", budget.name, scope.label, 0)
            if short == "budget_authority_unavailable":
                return Refusal("BLOCK", short, budget.name, scope.label, room)
            used = max(used, scope.cap_micro_usd - fleet.room(scope.key))
        elif used + amount <= scope.cap_micro_usd:
            return None
        action = verdict_at(scope, used + amount)  # past the cap: the policy's action or a ladder BLOCK
        downgrade_to = budget.downgrade_to if action == "DOWNGRADE" else None
        return Refusal(action, "budget_exceeded", budget.name, scope.label, room, downgrade_to)

    def reserve(
        self, attribution: Attribution, amount_micro_usd: int, now: datetime, *, priced: bool = True
    ) -> Reservation | Refusal:
        """Reserve the worst case on every scope, or on none (the most severe refusal wins).

        ``priced=False`` marks a model with no price: refused under an Enforce policy that does not
        allow unpriced models (pass the conservative ceiling, or 0, as the amount).
        """
        if amount_micro_usd < 0:
            raise ValueError("a reservation cannot be negative")
        resolved = self._scopes(attribution, now)
        scopes, keys = resolved.scopes, resolved.enforce
        fleet = self.fleet
        taken: tuple[str, ...] | None = None  # fleet mode: the leases, when they took it at once
        if fleet is not None and keys and resolved.admits[priced]:
            # the common case in one look: every lease covers it, no refusal to explain
            taken = fleet.try_take(keys, amount_micro_usd)
        refusal: Refusal | None = None
        shadow_refusal: Refusal | None = None
        for scope in scopes:
            if taken is not None and not scope.shadow:
                continue  # its lease took the reservation
            found = self._refusal(scope, amount_micro_usd, priced)
            if found is None:
                continue
            if scope.shadow:
                if shadow_refusal is None or outranks(found.action, shadow_refusal.action):
                    shadow_refusal = found
            elif refusal is None or outranks(found.action, refusal.action):
                refusal = found
        if refusal is not None:
            return refusal
        leases: tuple[str, ...] = () if taken is None else taken
        if fleet is not None and taken is None:
            found_leases = fleet.take(keys, amount_micro_usd) if keys else ()
            if found_leases is None:  # unreachable: checked above, with no await in between
                raise RuntimeError("a lease lost room between check and reservation")
            leases = found_leases
        for scope in scopes:
            tally = self._tallies.get(scope.key)
            if tally is None:
                tally = self._tallies[scope.key] = _Tally(scope.end)
            tally.reserved += amount_micro_usd
        self._last_id += 1
        reservation = Reservation(
            self._last_id, resolved.keys, amount_micro_usd, resolved.policies, shadow_refusal, leases
        )
        self._open[reservation.id] = reservation
        return reservation

    def settle(self, reservation: Reservation, actual_micro_usd: int) -> bool:
        """Turn a reservation into spend of ``actual_micro_usd`` (the provider's usage priced).

        ``actual`` above the reservation (price-catalog error) is recorded as it is. A reservation is
        settled once: settling or releasing it again changes nothing and returns False.
        """
        if actual_micro_usd < 0:
            raise ValueError("a charge cannot be negative")
        if self._open.pop(reservation.id, None) is None:
            return False
        if reservation.leases and self.fleet is not None:
            self.fleet.put(reservation.leases, reservation.amount_micro_usd, actual_micro_usd)
            if actual_micro_usd == 0:  # nothing spent: no ledger line needs to come first
                self.fleet.recorded(reservation.leases, reservation.amount_micro_usd, 0)
        for key in reservation.keys:
            tally = self._tallies.get(key)
            if tally is not None:
                tally.reserved -= reservation.amount_micro_usd
                tally.spent += actual_micro_usd
        return True

    def recorded(self, reservation: Reservation, actual_micro_usd: int) -> None:
        """The settled reservation's ledger line is written (fleet mode journals it: see ``fleetroom``)."""
        if reservation.leases and self.fleet is not None:
            self.fleet.recorded(reservation.leases, reservation.amount_micro_usd, actual_micro_usd)

    def release(self, reservation: Reservation) -> bool:
        """Drop a reservation that cost nothing (the request never reached a provider)."""
        return self.settle(reservation, 0)

    @property
    def outstanding(self) -> int:
        """How many reservations are neither settled nor released."""
        return len(self._open)

    def earliest_window_start(self, now: datetime) -> datetime | None:
        """Where replay must start: the oldest open window of any limit."""
        starts = [self._window(limit, now)[0] for plan in self._plans for limit, _, _ in plan.limits]
        return min(starts) if starts else None

    def restore(self, charges: Iterable[Charge], now: datetime) -> int:
        """Add ledger spend to the open windows (once, at startup); returns how many charges counted."""
        by_name = {plan.budget.name: plan for plan in self._plans}
        counted = 0
        for charge in charges:
            hit = False
            for name in dict.fromkeys(charge.policies):
                plan = by_name.get(name)
                if plan is None:
                    continue
                for scope in self._policy_scopes(plan, split_of(plan.budget, charge.dimensions), now):
                    if scope.key.start <= charge.time < scope.end:
                        self._tallies.setdefault(scope.key, _Tally(scope.end)).spent += charge.cost_micro_usd
                        hit = True
            counted += hit
        return counted

    def open_scopes(self, now: datetime) -> Iterator[tuple[Scope, int, int]]:
        """(scope, spent, reserved) of every open scope, in one pass over the counters: unsplit
        policies always, split policies for the values seen. Cheap with many split values (metrics)."""
        split_windows: dict[tuple[str, WindowKind, datetime], Scope] = {}
        for plan in self._plans:
            for scope in self._policy_scopes(plan, "", now):
                if plan.budget.split_by != "none":
                    split_windows[(scope.key.policy, scope.key.window, scope.key.start)] = scope
                    continue
                tally = self._tallies.get(scope.key)
                yield scope, (tally.spent if tally else 0), (tally.reserved if tally else 0)
        for key, tally in self._tallies.items():
            base = split_windows.get((key.policy, key.window, key.start)) if key.split else None
            if base is not None:
                yield base._replace(key=key), tally.spent, tally.reserved

    def snapshot(self, now: datetime) -> list[ScopeStatus]:
        """Every open scope: unsplit policies always, split policies for the values seen."""
        statuses: list[ScopeStatus] = []
        for plan in self._plans:
            budget = plan.budget
            splits = [""]
            if budget.split_by != "none":
                splits = sorted({key.split for key in self._tallies if key.policy == budget.name})
            for split in splits:
                for scope in self._policy_scopes(plan, split, now):
                    tally = self._tallies.get(scope.key)
                    if tally is None and split:
                        continue
                    spent, reserved = (tally.spent, tally.reserved) if tally else (0, 0)
                    statuses.append(
                        ScopeStatus(
                            policy=budget.name,
                            split=split,
                            window=scope.key.window,
                            mode=budget.mode,
                            limit_micro_usd=scope.limit_micro_usd,
                            spent_micro_usd=spent,
                            reserved_micro_usd=reserved,
                            remaining_micro_usd=room_left(scope, spent + reserved),
                            verdict=verdict_at(scope, spent + reserved),
                            window_start=scope.key.start,
                            window_end=scope.end,
                        )
                    )
        return statuses
