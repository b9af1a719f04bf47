"""Property tests: settled spend never passes the cap, and a request that fits is never refused."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from sluicegate_contract.schema import Budget, ModelPrice, Rates
from sluicegate_sidecar.attribution import Attribution
from sluicegate_sidecar.budget import BudgetBook, Refusal, Reservation
from sluicegate_sidecar.pricing import cost_micro_usd, max_output_tokens_within, worst_case_micro_usd
from sluicegate_sidecar.providers.base import Usage
from tests.support.budget_samples import NOON, attribution, policy

TEAMS = st.sampled_from(["search", "ads", None])
ZONES = st.sampled_from(["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])


@st.composite
def budgets(draw: st.DrawFn) -> list[Budget]:
    out = []
    for number in range(draw(st.integers(1, 3))):
        limits = tuple(
            policy(amount=draw(st.integers(0, 50_000)), window=window, tz=draw(ZONES)).limits[0]
            for window in draw(st.lists(st.sampled_from(["day", "week", "month"]), min_size=1, max_size=3))
        )
        ladder = draw(
            st.lists(
                st.tuples(st.floats(0.1, 1.2), st.sampled_from(["DOWNGRADE", "LIGHT_ONLY", "BLOCK"])),
                max_size=3,
            )
        )
        out.append(
            policy(
                f"p{number}",
                limits=limits,
                ladder=tuple(ladder),
                split_by=draw(st.sampled_from(["none", "team"])),
                selector=draw(st.sampled_from([{}, {"app": "search"}, {"app": "billing"}])),
                action=draw(st.sampled_from(["BLOCK", "DOWNGRADE", "LIGHT_ONLY"])),
                mode=draw(st.sampled_from(["Enforce", "Enforce", "Shadow"])),
                allow_unpriced=draw(st.booleans()),
            )
        )
    return out


def who(team: str | None) -> Attribution:
    return attribution(team=team) if team else attribution()


class BudgetMachine(RuleBasedStateMachine):
    """Random policies; random interleavings of reserve, settle, release and time passing."""

    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.book = BudgetBook([])
        self.now = NOON
        self.settled: dict[object, int] = {}  # what this test settled per scope key, independently

    @initialize(policies=budgets())
    def configure(self, policies: list[Budget]) -> None:
        self.book = BudgetBook(policies)

    @rule(target=reservations, team=TEAMS, amount=st.integers(0, 30_000), priced=st.booleans())
    def reserve(self, team: str | None, amount: int, priced: bool) -> Reservation | None:
        attr = who(team)
        room = self.book.headroom(attr, self.now)
        scopes = self.book.enforcing(attr, self.now)
        killed = any(s.budget.kill_switch for s in scopes)
        unpriced_refused = not priced and any(not s.budget.allow_unpriced for s in scopes)
        result = self.book.reserve(attr, amount, self.now, priced=priced)
        fits = room is None or amount <= room
        if fits and not killed and not unpriced_refused:
            assert isinstance(result, Reservation), f"false block: {amount} <= room {room}: {result}"
        if not fits:
            assert isinstance(result, Refusal), f"admitted {amount} with only {room} left"
        return result if isinstance(result, Reservation) else None

    @rule(reservation=consumes(reservations), fraction=st.floats(0, 1))
    def settle(self, reservation: Reservation | None, fraction: float) -> None:
        if reservation is None:
            return
        actual = int(reservation.amount_micro_usd * fraction)
        if self.book.settle(reservation, actual):
            for key in reservation.keys:
                self.settled[key] = self.settled.get(key, 0) + actual

    @rule(reservation=consumes(reservations))
    def release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            self.book.release(reservation)

    @rule(minutes=st.integers(0, 60 * 24 * 9))
    def wait(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @invariant()
    def spend_never_exceeds_any_enforced_cap(self) -> None:
        for status in self.book.snapshot(self.now):
            used = status.spent_micro_usd + status.reserved_micro_usd
            if status.mode == "Enforce":
                assert used <= status.limit_micro_usd, status
            assert status.reserved_micro_usd >= 0

    @invariant()
    def counters_match_what_was_settled(self) -> None:
        for status in self.book.snapshot(self.now):
            for key, amount in self.settled.items():
                if (key.policy, key.split, key.window, key.start) == (  # type: ignore[attr-defined]
                    status.policy,
                    status.split,
                    status.window,
                    status.window_start,
                ):
                    assert status.spent_micro_usd == amount


BudgetMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_random_interleavings_keep_spend_within_the_cap = BudgetMachine.TestCase


@st.composite
def rates(draw: st.DrawFn) -> Rates:
    # A cached read never costs more than a plain input token (pricing.worst_case_micro_usd relies on it).
    plain = draw(st.integers(0, 80_000_000))
    return Rates(
        input_per_mtok=plain,
        output_per_mtok=draw(st.integers(1, 200_000_000)),
        cached_input_per_mtok=draw(st.one_of(st.none(), st.integers(0, plain))),
        cache_write_per_mtok=draw(st.one_of(st.none(), st.integers(0, 100_000_000))),
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[ModelPrice, int, int, int, int, int]:
    price = ModelPrice(source="catalog", base=draw(rates()))
    prompt = draw(st.integers(0, 200_000))
    asked = draw(st.integers(1, 100_000))
    n = draw(st.integers(1, 4))
    return price, prompt, asked, n, draw(st.integers(0, prompt)), draw(st.integers(0, prompt))


@settings(max_examples=200, deadline=None)
@given(cap=st.integers(0, 5_000_000), batch=st.lists(requests(), min_size=1, max_size=40), data=st.data())
def test_concurrent_requests_with_random_prices_never_overspend(
    cap: int, batch: list[tuple[ModelPrice, int, int, int, int, int]], data: st.DataObject
) -> None:
    """The pipeline's bound: clamp max_tokens to the headroom, reserve the worst case, settle on usage."""
    book = BudgetBook([policy(amount=cap)])
    attr = attribution()
    in_flight = []
    for price, prompt, asked, n, cached, written in batch:
        room = book.headroom(attr, NOON)
        assert room is not None
        output_cap = min(asked, max_output_tokens_within(price, prompt, n, room))
        worst = worst_case_micro_usd(price, prompt, output_cap, n)
        result = book.reserve(attr, worst, NOON)
        if worst <= room:
            assert isinstance(result, Reservation), "a request whose worst case fits was refused"
            in_flight.append((result, price, prompt, output_cap, n, cached, written))
        else:
            assert isinstance(result, Refusal)
    # Settle in a random order, each with a random usage the provider could report.
    order = data.draw(st.permutations(range(len(in_flight))))
    for index in order:
        reservation, price, prompt, output_cap, n, cached, written = in_flight[index]
        output = data.draw(st.integers(0, output_cap * n))
        usage = Usage(prompt, output, cached_input_tokens=cached, cache_write_tokens=written)
        actual = cost_micro_usd(price, usage)
        assert actual <= reservation.amount_micro_usd
        book.settle(reservation, actual)
    [status] = book.snapshot(NOON)
    assert status.spent_micro_usd <= cap and status.reserved_micro_usd == 0


def test_a_burst_of_a_thousand_requests_at_the_edge_overshoots_by_nothing() -> None:
    book = BudgetBook([policy(amount=10_000)])  # $0.01 left
    attr = attribution()
    admitted = [r for r in (book.reserve(attr, 37, NOON) for _ in range(1_000)) if isinstance(r, Reservation)]
    assert len(admitted) == 10_000 // 37
    for reservation in admitted:
        book.settle(reservation, reservation.amount_micro_usd)
    assert book.snapshot(NOON)[0].spent_micro_usd == 270 * 37 <= 10_000
