"""The budget book in fleet mode (``--budget-authority``): verdicts and reservations on leases.

The book looks at a scope's lease once per verdict (``standing``) and reserves on the leases in one
pass when they cover the request (``try_take``); only when they do not does it ask scope by scope why
(``shortfall``), which may open a fall-back lease. The property test holds the one-look paths to the
step-by-step ones over random lease states: the same verdicts, refusals, reservations and leases.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate_contract.authority import AccountView, LeaseGrant, ScopeRef, SyncReply
from sluicegate_contract.schema import StaticAllowance
from sluicegate_sidecar.authorityclient import AuthorityClient
from sluicegate_sidecar.budget import BudgetBook, Reservation
from sluicegate_sidecar.ladder import ScopeKey
from tests.support.budget_samples import attribution, policy

WHO = attribution(team="search")
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
CAP = 100_000


class StepByStep(AuthorityClient):
    """The reference: every look separate (``fleet_room``, ``shortfall``), no one-pass reservation."""

    def standing(self, key: ScopeKey) -> tuple[int | None, bool]:
        return self.fleet_room(key), self.shortfall(key, 0) == "kill_switch"

    def try_take(self, keys: tuple[ScopeKey, ...], amount: int) -> tuple[str, ...] | None:
        return None


lease_states = st.fixed_dictionaries(
    {
        "granted": st.booleans(),  # the authority answered once (a lease, an account)
        "amount": st.integers(0, 20_000),
        "reserved": st.integers(0, 20_000),
        "refusal": st.sampled_from([None, "kill_switch", "budget_exceeded"]),
        "expired": st.booleans(),
        "unavailable": st.booleans(),  # the last sync failed
    }
)


def fleet_book(client_type: type[AuthorityClient], draw: dict[str, object]) -> BudgetBook:
    budgets = [
        policy(
            "team-cap", amount=CAP, kill_switch=draw["kill_switch"], allow_unpriced=draw["allow_unpriced"],
            fail_mode="static" if draw["static"] else "closed",
            static_allowance=StaticAllowance(amount_micro_usd=5_000, seconds=60) if draw["static"] else None,
        ),
        policy("watch", amount=3_000, mode="Shadow"),
    ]  # fmt: skip
    book = BudgetBook(budgets)
    client = client_type(["http://authority.invalid"], "s1", lambda: "default")
    ids = itertools.count(1)
    client.book.new_id = lambda: f"offline-{next(ids)}"
    client.book.budgets = lambda: budgets
    scope = draw["lease"]
    assert isinstance(scope, dict)
    if scope["granted"]:
        key = book.enforce_keys(WHO, NOW)[0]
        account = AccountView(
            cap_micro_usd=CAP, settled_micro_usd=0, leased_micro_usd=scope["amount"], holders=1
        )
        lease_id = None if scope["refusal"] == "budget_exceeded" and not scope["amount"] else "l1"
        grant = LeaseGrant(
            scope=ScopeRef(policy=key.policy, split=key.split, window=key.window), lease_id=lease_id,
            state="open", amount_micro_usd=scope["amount"], settled_micro_usd=0,
            ttl_ms=1_000 if scope["expired"] else 10**9, window_start="", window_end="",
            account=account, refusal=scope["refusal"],
        )  # fmt: skip
        client.book.apply(SyncReply(leases=(grant,)), sent_at=-10.0)
        lease = client.book.held.get("l1")
        if lease is not None:
            lease.reserved = min(scope["reserved"], lease.amount)
    client.book.unavailable = scope["unavailable"]
    book.fleet = client
    return book


def lease_state(book: BudgetBook) -> object:
    client = book.fleet
    assert isinstance(client, AuthorityClient)
    leases = {i: (h.amount, h.reserved, h.settled, h.current, h.offline) for i, h in client.book.held.items()}
    scopes = {
        k: (s.worst, s.taken, s.lease.lease_id if s.lease else None) for k, s in client.book.scopes.items()
    }
    return leases, scopes, client.book.unavailable, client.book.outage_used


@settings(max_examples=400, deadline=None)
@given(
    draw=st.fixed_dictionaries(
        {
            "lease": lease_states,
            "kill_switch": st.booleans(),
            "allow_unpriced": st.booleans(),
            "static": st.booleans(),
            "priced": st.booleans(),
            "amount": st.integers(0, 12_000),
        }
    )
)
def test_one_look_paths_decide_and_reserve_as_the_step_by_step_checks_do(draw: dict[str, object]) -> None:
    fast, reference = fleet_book(AuthorityClient, draw), fleet_book(StepByStep, draw)
    amount = int(draw["amount"]) if draw["priced"] else 0  # type: ignore[call-overload]
    for book in (fast, reference):
        book.decision = book.decide(WHO, NOW)  # type: ignore[attr-defined]
        book.result = book.reserve(WHO, amount, NOW, priced=bool(draw["priced"]))  # type: ignore[attr-defined]
    assert fast.decision == reference.decision  # type: ignore[attr-defined]
    assert fast.result == reference.result  # type: ignore[attr-defined]
    assert lease_state(fast) == lease_state(reference)
    if isinstance(fast.result, Reservation):  # type: ignore[attr-defined]
        assert fast.settle(fast.result, amount)  # type: ignore[attr-defined]
        assert fast.outstanding == 0


def test_an_unpriced_model_the_policy_allows_is_served_before_any_lease_is_held() -> None:
    """A reservation of 0 (``allowUnpriced``) needs no lease: it is made, and settled, without one
    (it was an internal error before the sidecar's first lease)."""
    book = BudgetBook([policy("team-cap", amount=CAP, allow_unpriced=True)])
    book.fleet = AuthorityClient(["http://authority.invalid"], "s1", lambda: "default")
    reservation = book.reserve(WHO, 0, NOW, priced=False)
    assert isinstance(reservation, Reservation)
    assert reservation.leases == ()
    assert book.settle(reservation, 0)
    refused = book.reserve(WHO, 1, NOW)  # a priced request still needs a lease (none yet: the authority)
    assert not isinstance(refused, Reservation)
    assert refused.reason == "budget_authority_unavailable"
