"""Verdicts for each action, the ladder, precedence, Shadow mode and unpriced models."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate_contract.ladder import judge
from sluicegate_contract.leases import scope_cap
from sluicegate_contract.schema import Budget, LadderStep, Limit
from sluicegate_sidecar.attribution import Attribution
from sluicegate_sidecar.budget import SCOPE_CACHE, BudgetBook, Refusal, Reservation
from sluicegate_sidecar.ladder import verdict_at
from tests.support.budget_samples import NOON, attribution, policy

WHO = attribution(team="search")


def spend(book: BudgetBook, amount: int) -> None:
    reservation = book.reserve(WHO, amount, NOON)
    assert isinstance(reservation, Reservation)
    book.settle(reservation, amount)


def test_block_refuses_a_request_that_does_not_fit_and_names_the_policy() -> None:
    book = BudgetBook([policy("team-cap", amount=1_000)])
    spend(book, 900)
    refusal = book.reserve(WHO, 101, NOON)
    assert isinstance(refusal, Refusal)
    assert (refusal.action, refusal.reason, refusal.policy) == ("BLOCK", "budget_exceeded", "team-cap")
    assert refusal.remaining_micro_usd == 100
    assert isinstance(book.reserve(WHO, 100, NOON), Reservation)


def test_block_verdict_appears_only_once_nothing_is_left() -> None:
    book = BudgetBook([policy(amount=1_000)])
    spend(book, 999)
    assert book.decide(WHO, NOON).action == "allow"
    spend(book, 1)
    decision = book.decide(WHO, NOON)
    assert (decision.action, decision.policy, decision.remaining_micro_usd) == ("BLOCK", "cap", 0)


def test_kill_switch_refuses_everything_even_free_requests() -> None:
    book = BudgetBook([policy(kill_switch=True)])
    refusal = book.reserve(WHO, 0, NOON)
    assert isinstance(refusal, Refusal)
    assert (refusal.action, refusal.reason) == ("KILL", "kill_switch")
    assert book.decide(WHO, NOON).action == "KILL"
    assert book.headroom(WHO, NOON) == 0


def test_kill_switch_wins_over_block_from_another_policy() -> None:
    book = BudgetBook([policy("small", amount=10), policy("frozen", kill_switch=True)])
    refusal = book.reserve(WHO, 50, NOON)
    assert isinstance(refusal, Refusal)
    assert (refusal.action, refusal.policy) == ("KILL", "frozen")


def test_downgrade_policy_asks_for_the_lighter_tier_when_a_request_does_not_fit() -> None:
    book = BudgetBook([policy(amount=1_000, action="DOWNGRADE", downgrade_to="light")])
    spend(book, 990)
    refusal = book.reserve(WHO, 50, NOON)
    assert isinstance(refusal, Refusal)
    assert (refusal.action, refusal.downgrade_to) == ("DOWNGRADE", "light")
    spend(book, 10)
    decision = book.decide(WHO, NOON)
    assert (decision.action, decision.downgrade_to) == ("DOWNGRADE", "light")


def test_ladder_steps_apply_in_order_of_spent_and_reserved_fraction() -> None:
    ladder = ((0.8, "DOWNGRADE"), (0.95, "LIGHT_ONLY"), (1.0, "BLOCK"))
    book = BudgetBook([policy(amount=1_000, ladder=ladder, downgrade_to="light")])
    seen = []
    for amount in (799, 1, 149, 1, 49, 1):
        spend(book, amount)
        seen.append(book.decide(WHO, NOON).action)
    assert seen == ["allow", "DOWNGRADE", "DOWNGRADE", "LIGHT_ONLY", "LIGHT_ONLY", "BLOCK"]


def test_ladder_counts_reservations_in_flight() -> None:
    book = BudgetBook([policy(amount=1_000, ladder=((0.5, "LIGHT_ONLY"),))])
    reservation = book.reserve(WHO, 600, NOON)
    assert book.decide(WHO, NOON).action == "LIGHT_ONLY"
    assert isinstance(reservation, Reservation)
    book.settle(reservation, 100)
    assert book.decide(WHO, NOON).action == "allow"


def test_a_ladder_block_below_the_cap_is_a_hard_cap_at_that_fraction() -> None:
    book = BudgetBook([policy(amount=1_000, ladder=((0.9, "BLOCK"),), action="DOWNGRADE")])
    assert book.headroom(WHO, NOON) == 900
    refusal = book.reserve(WHO, 901, NOON)
    assert isinstance(refusal, Refusal) and refusal.action == "BLOCK"
    spend(book, 900)
    assert book.decide(WHO, NOON).action == "BLOCK"


def test_the_most_severe_policy_decides() -> None:
    book = BudgetBook(
        [
            policy("soft", amount=1_000, ladder=((0.1, "DOWNGRADE"),), downgrade_to="standard"),
            policy("hard", amount=1_000, ladder=((0.1, "LIGHT_ONLY"),)),
        ]
    )
    spend(book, 200)
    decision = book.decide(WHO, NOON)
    assert (decision.action, decision.policy) == ("LIGHT_ONLY", "hard")


def test_shadow_policy_records_but_never_refuses() -> None:
    book = BudgetBook([policy("dry-run", amount=100, mode="Shadow")])
    reservation = book.reserve(WHO, 500, NOON)
    assert isinstance(reservation, Reservation)
    assert reservation.shadow_refusal is not None
    assert (reservation.shadow_refusal.action, reservation.shadow_refusal.policy) == ("BLOCK", "dry-run")
    assert reservation.policies == ("dry-run",)
    book.settle(reservation, 400)
    decision = book.decide(WHO, NOON)
    assert (decision.action, decision.shadow_action, decision.shadow_policy) == ("allow", "BLOCK", "dry-run")
    assert decision.shadow and decision.label == "allow; shadow=BLOCK"
    assert decision.remaining_micro_usd is None
    [status] = book.snapshot(NOON)
    assert (status.spent_micro_usd, status.verdict, status.mode) == (400, "BLOCK", "Shadow")


def test_shadow_kill_switch_does_not_stop_traffic() -> None:
    book = BudgetBook([policy(kill_switch=True, mode="Shadow")])
    reservation = book.reserve(WHO, 10, NOON)
    assert isinstance(reservation, Reservation)
    assert reservation.shadow_refusal is not None and reservation.shadow_refusal.action == "KILL"
    assert book.decide(WHO, NOON).label == "allow; shadow=KILL"


def test_shadow_and_enforce_policies_side_by_side_enforce_only_the_enforced_one() -> None:
    book = BudgetBook([policy("real", amount=1_000), policy("what-if", amount=10, mode="Shadow")])
    reservation = book.reserve(WHO, 500, NOON)
    assert isinstance(reservation, Reservation)
    assert reservation.policies == ("real", "what-if")
    assert book.headroom(WHO, NOON) == 500


def test_unpriced_model_is_refused_under_an_enforced_budget() -> None:
    book = BudgetBook([policy()])
    refusal = book.reserve(WHO, 0, NOON, priced=False)
    assert isinstance(refusal, Refusal)
    assert (refusal.action, refusal.reason) == ("BLOCK", "pricing_unknown")


def test_unpriced_model_passes_when_the_policy_allows_it_or_no_budget_applies() -> None:
    assert isinstance(
        BudgetBook([policy(allow_unpriced=True)]).reserve(WHO, 0, NOON, priced=False), Reservation
    )
    assert isinstance(BudgetBook([]).reserve(WHO, 0, NOON, priced=False), Reservation)
    shadow = BudgetBook([policy(mode="Shadow")]).reserve(WHO, 0, NOON, priced=False)
    assert isinstance(shadow, Reservation) and shadow.shadow_refusal is not None
    assert shadow.shadow_refusal.reason == "pricing_unknown"


def test_selector_limits_a_policy_to_matching_pods() -> None:
    book = BudgetBook([policy("billing-only", amount=10, selector={"app": "billing"})])
    assert isinstance(book.reserve(WHO, 1_000, NOON), Reservation)
    assert book.headroom(WHO, NOON) is None
    billing = attribution(labels={"app": "billing"})
    assert isinstance(book.reserve(billing, 11, NOON), Refusal)


def test_split_by_team_gives_each_team_its_own_cap_and_unattributed_requests_share_one() -> None:
    book = BudgetBook([policy(amount=100, split_by="team")])
    search, ads, nobody = attribution(team="search"), attribution(team="ads"), attribution()
    for who in (search, ads, nobody):
        reservation = book.reserve(who, 100, NOON)
        assert isinstance(reservation, Reservation)
    refusal = book.reserve(attribution(), 1, NOON)
    assert isinstance(refusal, Refusal) and refusal.scope == "cap[team=(none)]/day"
    assert {s.split for s in book.snapshot(NOON)} == {"search", "ads", "(none)"}


def test_requests_from_one_pod_are_charged_to_the_scope_of_their_own_split_value() -> None:
    """The book reuses a request's scopes for the next one from the same Pod with the same split
    values; a value that changes (or a new config that splits) gets its own scope, other
    dimensions (a user, under a policy split by team) never matter."""
    pod = attribution().pod
    search, ads = ({"team": "search", "user": "u1"}, {"team": "ads", "user": "u1"})
    book = BudgetBook([policy(amount=100, split_by="team")])
    assert isinstance(book.reserve(Attribution(pod, search, {}), 100, NOON), Reservation)
    assert isinstance(book.reserve(Attribution(pod, ads, {}), 100, NOON), Reservation)
    refused = book.reserve(Attribution(pod, {**search, "user": "u2"}, {}), 1, NOON)
    assert isinstance(refused, Refusal) and refused.scope == "cap[team=search]/day"
    book = BudgetBook([policy(amount=100)])
    assert isinstance(book.reserve(Attribution(pod, search, {}), 100, NOON), Reservation)
    book.replace_budgets([policy(amount=100, split_by="team")])
    assert isinstance(book.reserve(Attribution(pod, ads, {}), 100, NOON), Reservation)
    assert isinstance(book.reserve(Attribution(pod, search, {}), 100, NOON), Reservation)


def test_the_scopes_remembered_for_requests_stay_bounded_however_many_split_values_come() -> None:
    pod = attribution().pod
    book = BudgetBook([policy(amount=100, split_by="user")])
    for user in range(3 * SCOPE_CACHE):
        assert isinstance(book.reserve(Attribution(pod, {"user": f"u{user}"}, {}), 1, NOON), Reservation)
        assert len(book._scope_cache) <= SCOPE_CACHE
    assert len(book.snapshot(NOON)) == 3 * SCOPE_CACHE  # the tallies are kept, only the lookups go
    # the newest values stay remembered, the oldest went first (one at a time, never all at once)
    kept = {values for _pod, values in book._scope_cache}
    assert len(kept) == SCOPE_CACHE and ("u0",) not in kept and (f"u{3 * SCOPE_CACHE - 1}",) in kept


def test_every_limit_of_a_policy_must_have_room() -> None:
    limits = (
        policy(amount=1_000).limits[0],
        policy(amount=150, window="month").limits[0],
    )
    book = BudgetBook([policy(limits=limits)])
    spend(book, 100)
    refusal = book.reserve(WHO, 51, NOON)
    assert isinstance(refusal, Refusal) and refusal.scope == "cap/month"
    assert book.headroom(WHO, NOON) == 50


def test_settle_frees_the_unused_part_and_counts_only_once() -> None:
    book = BudgetBook([policy(amount=1_000)])
    reservation = book.reserve(WHO, 800, NOON)
    assert isinstance(reservation, Reservation)
    assert book.settle(reservation, 300) is True
    assert book.settle(reservation, 300) is False
    assert book.release(reservation) is False
    [status] = book.snapshot(NOON)
    assert (status.spent_micro_usd, status.reserved_micro_usd, status.remaining_micro_usd) == (300, 0, 700)
    assert book.outstanding == 0


def test_release_returns_the_whole_reservation() -> None:
    book = BudgetBook([policy(amount=1_000)])
    reservation = book.reserve(WHO, 800, NOON)
    assert isinstance(reservation, Reservation)
    book.release(reservation)
    assert book.headroom(WHO, NOON) == 1_000


def test_a_charge_above_the_reservation_is_recorded_as_it_is() -> None:
    book = BudgetBook([policy(amount=1_000)])
    reservation = book.reserve(WHO, 100, NOON)
    assert isinstance(reservation, Reservation)
    book.settle(reservation, 130)  # price-catalog error: the provider billed more
    assert book.snapshot(NOON)[0].spent_micro_usd == 130


def test_negative_amounts_are_rejected() -> None:
    book = BudgetBook([policy()])
    with pytest.raises(ValueError, match="negative"):
        book.reserve(WHO, -1, NOON)
    reservation = book.reserve(WHO, 1, NOON)
    assert isinstance(reservation, Reservation)
    with pytest.raises(ValueError, match="negative"):
        book.settle(reservation, -5)


def test_a_reservation_is_charged_to_the_window_it_was_made_in() -> None:
    book = BudgetBook([policy(amount=1_000)])
    late = NOON.replace(hour=23, minute=59)
    reservation = book.reserve(WHO, 700, late)
    assert isinstance(reservation, Reservation)
    next_day = late + timedelta(minutes=2)
    assert book.headroom(WHO, next_day) == 1_000
    book.settle(reservation, 700)
    assert book.headroom(WHO, next_day) == 1_000


def test_new_config_keeps_spend_and_applies_the_new_limit() -> None:
    book = BudgetBook([policy(amount=1_000)])
    spend(book, 600)
    book.replace_budgets([policy(amount=500)])
    assert book.headroom(WHO, NOON) == 0
    assert book.decide(WHO, NOON).action == "BLOCK"


def test_invalid_policies_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Base'"):
        BudgetBook([policy(tz="Mars/Base")])
    with pytest.raises(ValueError, match="unique"):
        BudgetBook([policy("a"), policy("a")])


def test_decision_remaining_is_the_least_room_over_enforced_scopes() -> None:
    book = BudgetBook([policy("a", amount=1_000), policy("b", amount=300)])
    spend(book, 100)
    assert book.decide(WHO, NOON).remaining_micro_usd == 200


def test_a_new_configs_policies_apply_to_the_next_question_about_the_same_request() -> None:
    book = BudgetBook([policy(amount=1_000)])
    who = attribution()
    assert book.headroom(who, NOON) == 1_000
    book.replace_budgets([policy(amount=1_000), policy(name="tight", amount=10)])
    assert book.headroom(who, NOON) == 10
    assert isinstance(book.reserve(who, 11, NOON), Refusal)
    book.replace_budgets([])
    assert book.headroom(who, NOON) is None


ACTIONS = ("allow", "DOWNGRADE", "LIGHT_ONLY", "BLOCK")


@settings(max_examples=400, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=10**12),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2_000_000), st.sampled_from(ACTIONS)), max_size=4
    ),
    action=st.sampled_from(ACTIONS),
    kill_switch=st.booleans(),
    used=st.integers(min_value=0, max_value=2 * 10**12),
)
def test_a_scopes_verdict_is_the_contracts_rule_at_every_spend(
    limit: int, steps: list[tuple[int, str]], action: str, kill_switch: bool, used: int
) -> None:
    """The scope's shortcut below its first step, limit and cap ("allow" without walking the ladder)
    never changes a verdict: at any spend it is the contract's ``judge``, and one micro-USD below the
    shortcut's end is still "allow"."""
    budget = Budget(
        name="cap",
        uid="uid-cap",
        limits=(Limit(window="day", amount_micro_usd=limit),),
        ladder=tuple(LadderStep(at_ppm=at, action=step) for at, step in steps),  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
        kill_switch=kill_switch,
    )
    cap = scope_cap(budget, budget.limits[0])
    scope = BudgetBook([budget]).enforcing(WHO, NOON)[0]
    assert (scope.limit_micro_usd, scope.cap_micro_usd) == (limit, cap)
    steps_of = [(step.at_ppm, step.action) for step in budget.ladder]
    for spent in {used, max(0, scope.calm - 1), scope.calm, scope.calm + 1, limit, cap}:
        expected = judge(spent, limit=limit, cap=cap, steps=steps_of, action=action, kill_switch=kill_switch)  # type: ignore[arg-type]
        assert verdict_at(scope, spent) == expected
    if scope.calm > 0:
        assert (
            judge(scope.calm - 1, limit=limit, cap=cap, steps=steps_of, action=action, kill_switch=False)
            == "allow"
        )  # type: ignore[arg-type]
