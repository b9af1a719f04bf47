"""Budget admission for one request: the verdict, then per attempt the worst case reserved.

An attempt reserves its worst case with the output cap clamped to what remains. When only other
requests' reservations in flight stand in the way (they settle for what was used, usually far less),
it waits for them, boundedly, instead of being clamped or refused: a burst at a small cap is not
starved by over-reservation, and the bound is never loosened. Budget state lives in the BudgetBook.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .attribution import Attribution
from .budget import BudgetBook, Decision, Refusal, Reservation
from .context import RequestContext
from .pricing import max_output_tokens_within, worst_case_micro_usd
from .routing.bounds import RequestBound
from .routing.catalog import Target
from .runtime import Gateway
from .wire import Fields, output_cap

# The output limit assumed, and sent under a budget, for a model whose limit the catalog does not
# know: low enough that every current model accepts it (a cap above a model's limit is a 400).
UNKNOWN_OUTPUT_LIMIT = 4_096
RECHECK_SECONDS = 0.1  # a waiting request looks again at least this often, settle signal or not


def rooms(book: BudgetBook, attribution: Attribution, now: datetime) -> tuple[int, int] | None:
    """(room now, room once every reservation in flight is released) over the request's Enforce
    scopes, in micro-USD; None when no Enforce scope applies."""
    scopes = book.enforcing(attribution, now)
    if not scopes:
        return None
    tallies = {(s.policy, s.split, s.window, s.window_start): s for s in book.snapshot(now)}
    room_now: int | None = None
    room_settled: int | None = None
    for scope in scopes:
        key = scope.key
        status = tallies.get((key.policy, key.split, key.window, key.start))
        spent, reserved = (status.spent_micro_usd, status.reserved_micro_usd) if status else (0, 0)
        cap = 0 if scope.budget.kill_switch else scope.cap_micro_usd
        now_room, settled_room = max(0, cap - spent - reserved), max(0, cap - spent)
        room_now = now_room if room_now is None else min(room_now, now_room)
        room_settled = settled_room if room_settled is None else min(room_settled, settled_room)
    assert room_now is not None and room_settled is not None
    return room_now, room_settled


class Admission:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def decide(self, ctx: RequestContext) -> Decision:
        """The verdict before routing. A BLOCK caused only by reservations in flight waits for them."""
        budgets = self.gw.budgets
        decision = budgets.decide(ctx.attribution, ctx.wall)
        while decision.action == "BLOCK" and await self._wait(ctx, want=1, need=1):
            decision = budgets.decide(ctx.attribution, datetime.now(UTC))
        return decision

    async def reserve(
        self, ctx: RequestContext, target: Target, bound: RequestBound, fields: Fields, least: int = 1
    ) -> tuple[Reservation | None, int | None, Refusal | None]:
        """Reserve this attempt's worst case; returns (reservation, output cap to send, refusal).

        The worst case is the request's input bound plus every output it can produce at the output
        cap: the client's cap, else the model's output limit (``UNKNOWN_OUTPUT_LIMIT`` when the
        catalog has none), never above the model's limit, clamped to what remains of the budget.
        The cap to send is None when the request goes out unchanged: the client's own cap, or none
        when the model's known limit fits. Otherwise (clamped, above the model's limit, or a limit
        the catalog does not know) it is sent, so the reply cannot cost more than was reserved.
        ``least`` is the smallest cap the upstream accepts (``routing.bounds.least_output_cap``): a
        budget with room for fewer output tokens than that (and than the client asked for) is
        refused as any budget without room is, never sent a cap the upstream would refuse.
        """
        budgets = self.gw.budgets
        price = target.spec.price
        model_max = target.spec.max_output_tokens
        asked = output_cap(fields)
        outputs = bound.outputs
        input_tokens = bound.input_tokens(target)
        cap = asked if asked is not None else (model_max or UNKNOWN_OUTPUT_LIMIT)
        if model_max is not None:
            cap = min(cap, model_max)
        if outputs == 0:  # embeddings: input only
            cap = 0
        if price is None:
            found = budgets.reserve(ctx.attribution, 0, datetime.now(UTC), priced=False)
            send_cap = cap if asked is not None and cap < asked else None
            return (found, send_cap, None) if isinstance(found, Reservation) else (None, None, found)
        want = worst_case_micro_usd(price, input_tokens, cap, outputs)
        least_cap = min(cap, max(1, least))
        need = worst_case_micro_usd(price, input_tokens, least_cap, outputs)
        now = datetime.now(UTC)
        headroom = budgets.headroom(ctx.attribution, now)
        if headroom is not None and headroom < want and budgets.fleet is not None:
            # fleet mode, short of the worst case (the hot path is not): top the leases up (one sync)
            await budgets.fleet.cover(budgets.enforce_keys(ctx.attribution, now), want, need)
            now = datetime.now(UTC)
            headroom = budgets.headroom(ctx.attribution, now)
        while headroom is not None and headroom < want and await self._wait(ctx, want, need):
            now = datetime.now(UTC)
            headroom = budgets.headroom(ctx.attribution, now)
        send = cap
        if headroom is not None and outputs > 0:
            fits = max_output_tokens_within(price, input_tokens, outputs, headroom)
            if fits < cap:
                send = max(fits, least_cap)  # below ``least_cap``: over the room, so refused
        amount = worst_case_micro_usd(price, input_tokens, send, outputs)
        result = budgets.reserve(ctx.attribution, amount, now)
        if isinstance(result, Refusal):
            return None, None, result
        if result.shadow_refusal is not None and ctx.shadow_action is None:
            ctx.shadow_action = result.shadow_refusal.action
        send_cap = _cap_to_send(send, asked, model_max, budgeted=headroom is not None, outputs=outputs)
        return result, send_cap, None

    async def _wait(self, ctx: RequestContext, want: int, need: int) -> bool:
        """Wait for a reservation to settle when that may make room: the room now is short of
        ``want`` (or of all there will be) but reservations in flight hold at least ``need``.
        False when waiting cannot help or the request's admission deadline has passed."""
        clock = time.monotonic()
        if ctx.admission_deadline is None:
            ctx.admission_deadline = clock + self.gw.settings.budget_wait_seconds
        left = ctx.admission_deadline - clock
        fleet = self.gw.budgets.fleet
        if fleet is not None:  # the room is the fleet's: wait while other sidecars' reservations settle
            keys = self.gw.budgets.enforce_keys(ctx.attribution, datetime.now(UTC))
            if left <= 0 or not fleet.worth_waiting(keys, need):
                return False
            await fleet.wait(keys, want, need, left)
            return True
        found = rooms(self.gw.budgets, ctx.attribution, datetime.now(UTC))
        if left <= 0 or found is None:
            return False
        room_now, room_settled = found
        if room_now >= min(want, room_settled) or room_settled < need:
            return False
        await self.gw.wait_settled(min(left, RECHECK_SECONDS))
        return True


def _cap_to_send(
    send: int, asked: int | None, model_max: int | None, *, budgeted: bool, outputs: int
) -> int | None:
    """The output cap to put in the upstream request, or None to leave the request unchanged."""
    if outputs == 0:
        return None
    if asked is not None:
        return send if send < asked else None  # clamped to the budget or to the model's limit
    if budgeted and (model_max is None or send < model_max):
        return send  # the bound needs a cap the provider would not apply by itself
    return None
