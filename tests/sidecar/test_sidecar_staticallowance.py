"""failMode static (pure): once the lease no longer covers a request and the authority does not answer,
a sidecar spends at most its allowance per scope and outage, for at most the allowance's seconds,
reserved worst case like any request; the spend is reported when the authority answers again."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate_contract.authority import AccountView, LeaseGrant, ScopeRef, SyncReply
from sluicegate_contract.schema import Budget, Limit, StaticAllowance
from sluicegate_sidecar.leases import LeaseBook
from sluicegate_sidecar.staticallowance import Allowance, allowances, spent

KEY = ("team-cap", "", "day")
SCOPE = ScopeRef(policy="team-cap", window="day")
CAP = 100_000
ALLOWANCE = 5_000
SECONDS = 30


def policy(fail_mode: str = "static", **fields) -> Budget:
    allowance = (
        StaticAllowance(amount_micro_usd=ALLOWANCE, seconds=SECONDS) if fail_mode == "static" else None
    )
    return Budget(
        name="team-cap",
        uid="u",
        limits=(Limit(window="day", amount_micro_usd=CAP),),
        fail_mode=fail_mode,
        static_allowance=allowance,
        **fields,
    )


def grant(amount: int = 10_000, *, lease_id: str = "l1", state: str = "open", settled: int = 0, refusal=None):
    account = AccountView(
        cap_micro_usd=CAP, settled_micro_usd=settled, leased_micro_usd=amount - settled, holders=1
    )
    return LeaseGrant(
        scope=SCOPE, lease_id=lease_id, state=state, amount_micro_usd=amount, settled_micro_usd=settled,
        ttl_ms=10_000, window_start="", window_end="", account=account, refusal=refusal,
    )  # fmt: skip


def to_dict(grant_: LeaseGrant) -> dict:
    return {name: getattr(grant_, name) for name in grant_.__struct_fields__}


def book_for(*budgets: Budget) -> LeaseBook:
    book = LeaseBook(budgets=lambda: budgets)
    ids = iter(f"offline-{n}" for n in range(1, 100))
    book.new_id = lambda: next(ids)
    book.apply(SyncReply(leases=(grant(),)), sent_at=0.0)
    return book


def spend_lease(book: LeaseBook, mono: float) -> None:
    taken = book.take((KEY,), 10_000, mono)
    assert taken == ("l1",)
    book.put(taken, 10_000, 10_000)
    book.recorded(taken, 10_000, 10_000)


def test_only_enforce_policies_with_failmode_static_have_an_allowance() -> None:
    assert allowances([policy(), policy("closed"), policy(mode="Shadow")]) == {
        "team-cap": Allowance(ALLOWANCE, float(SECONDS))
    }


def test_closed_answers_unavailable_once_the_lease_is_spent() -> None:
    book = book_for(policy("closed"))
    spend_lease(book, 1.0)
    book.failed()
    assert book.room(KEY, 2.0) == 0
    assert book.shortfall(KEY, 1, 2.0) == "budget_authority_unavailable"
    assert not any(lease.offline for lease in book.held.values())


def test_static_serves_the_allowance_reserved_worst_case_and_never_more() -> None:
    book = book_for(policy())
    spend_lease(book, 1.0)
    book.failed()
    assert book.shortfall(KEY, 3_000, 2.0) is None
    first = book.take((KEY,), 3_000, 2.0)
    assert first is not None and first != ("l1",)
    assert book.room(KEY, 2.0) == 2_000  # the whole worst case is held until it settles
    assert book.shortfall(KEY, 2_001, 2.0) == "budget_authority_unavailable"
    book.put(first, 3_000, 1_000)  # settled below its worst case: the rest comes back ...
    book.recorded(first, 3_000, 1_000)  # ... once the journal has the settlement
    assert book.room(KEY, 2.5) == 4_000
    second = book.take((KEY,), 4_000, 2.5)
    assert second == first
    assert book.take((KEY,), 1, 2.5) is None
    assert book.shortfall(KEY, 1, 2.5) == "budget_authority_unavailable"


def test_the_allowance_lasts_its_seconds_and_one_outage_gives_it_once() -> None:
    book = book_for(policy())
    spend_lease(book, 1.0)
    book.failed()
    assert book.room(KEY, 5.0) == ALLOWANCE  # opened now: seconds count from here
    assert book.room(KEY, 5.0 + SECONDS - 0.1) == ALLOWANCE
    assert book.room(KEY, 5.0 + SECONDS) == 0
    book.asks(5.0 + SECONDS)  # a (failing) sync retires it
    book.failed()
    assert book.room(KEY, 40.0) == 0
    assert book.shortfall(KEY, 1, 40.0) == "budget_authority_unavailable"


def test_a_lease_that_still_covers_is_spent_first() -> None:
    book = book_for(policy())
    book.failed()
    assert book.room(KEY, 1.0) == 10_000
    assert book.take((KEY,), 6_000, 1.0) == ("l1",)
    assert not any(lease.offline for lease in book.held.values())


def test_the_offline_spend_is_reported_when_the_authority_answers_and_a_new_outage_may_use_it_again() -> None:
    book = book_for(policy())
    spend_lease(book, 1.0)
    book.failed()
    taken = book.take((KEY,), 4_000, 2.0)
    assert taken is not None
    book.put(taken, 4_000, 2_500)
    book.recorded(taken, 4_000, 2_500)
    (offline_id,) = taken
    book.apply(SyncReply(leases=(grant(20_000, lease_id="l2"),)), sent_at=3.0)  # back, a new lease
    assert book.take((KEY,), 1_000, 3.1) == ("l2",)  # not the offline lease any more
    asks = {ask.lease_id: ask for ask in book.asks(3.2)}
    report = asks[offline_id]
    assert (report.offline, report.final, report.settled_micro_usd, report.want_micro_usd) == (
        True,
        True,
        2_500,
        0,
    )
    assert asks["l1"].offline is False
    closed = grant(0, lease_id=offline_id, state="closed", settled=2_500)
    book.apply(SyncReply(leases=(closed,)), sent_at=3.3)
    assert offline_id not in book.held
    book.failed()  # a second outage: the lease l2 covers first, then a fresh allowance
    assert book.room(KEY, 4.0) == 19_000
    spent_l2 = book.take((KEY,), 19_000, 4.0)
    assert spent_l2 is not None
    assert book.room(KEY, 4.1) == ALLOWANCE


def test_an_outage_grants_nothing_on_a_scope_the_authority_showed_at_its_cap() -> None:
    book = LeaseBook(budgets=lambda: (policy(),))
    refused = grant(0, lease_id=None, state="closed", refusal="budget_exceeded")
    at_cap = AccountView(cap_micro_usd=CAP, settled_micro_usd=CAP, leased_micro_usd=0, holders=0)
    book.apply(SyncReply(leases=(LeaseGrant(**{**to_dict(refused), "account": at_cap}),)), sent_at=0.0)
    book.failed()
    assert book.room(KEY, 1.0) == 0
    assert book.shortfall(KEY, 1, 1.0) == "budget_authority_unavailable"
    assert spent(None, "budget_exceeded")
    assert not spent(None, None)


def test_a_config_turned_closed_stops_an_open_allowance() -> None:
    budgets: list[tuple[Budget, ...]] = [(policy(),)]
    book = LeaseBook(budgets=lambda: budgets[0])
    book.failed()
    assert book.room(KEY, 1.0) == ALLOWANCE  # never answered: a cold start in an outage
    budgets[0] = (policy("closed"),)
    assert book.room(KEY, 1.1) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["take", "settle", "tick", "fail", "back"]), st.integers(1, 6_000)),
        max_size=60,
    )
)
def test_no_interleaving_spends_more_offline_than_one_allowance_per_outage(steps) -> None:
    book = book_for(policy())
    mono, outages, inflight, offline_spend = 1.0, 0, [], 0
    for action, amount in steps:
        if action == "take":
            taken = book.take((KEY,), amount, mono)
            if taken is not None:
                inflight.append((taken, amount))
        elif action == "settle" and inflight:
            taken, reserved = inflight.pop(0)
            actual = min(reserved, amount)
            book.put(taken, reserved, actual)
            book.recorded(taken, reserved, actual)
            if book.held.get(taken[0]) is not None and book.held[taken[0]].offline:
                offline_spend += actual
        elif action == "tick":
            mono += amount / 200  # up to 30 s
            book.asks(mono)
        elif action == "fail":
            outages += not book.unavailable
            book.failed()
        elif action == "back":
            book.apply(SyncReply(), sent_at=mono)
        for lease in book.held.values():
            assert lease.settled + lease.reserved <= lease.amount
            if lease.offline:
                assert lease.amount == ALLOWANCE
    assert offline_spend <= outages * ALLOWANCE


def test_reading_the_rooms_for_metrics_opens_no_allowance() -> None:
    book = book_for(policy())
    spend_lease(book, 1.0)
    book.failed()
    assert book.rooms(2.0) == {("team-cap", "day"): 0}
    assert not any(lease.offline for lease in book.held.values())
    assert book.room(KEY, 3.0) == ALLOWANCE  # a request's look opens it, its seconds from then
