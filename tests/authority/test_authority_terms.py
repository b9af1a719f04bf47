"""The authority reads a scope's cap, window and kill switch from the signed config, as the sidecar does."""

from __future__ import annotations

from datetime import UTC, datetime

from sluicegate_contract.schema import Budget, Config, LadderStep, Limit
from sluicegate_operator.authority.terms import scope_terms

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)


def config(*budgets: Budget) -> Config:
    return Config(
        schema_version=1, namespace="default", serial=1, issued_at="", not_before="", not_after="",
        signing_key_id="k", price_catalog_version="", content_hash="", budgets=budgets,
    )  # fmt: skip


def test_a_ladder_block_below_100_percent_lowers_the_cap_the_authority_grants_against() -> None:
    policy = Budget(
        name="p", uid="u", limits=(Limit(window="day", amount_micro_usd=1_000_000),),
        ladder=(LadderStep(at_ppm=900_000, action="BLOCK"),),
    )  # fmt: skip
    terms = scope_terms(config(policy), "p", "day", NOW)
    assert terms is not None and terms.cap == 900_000


def test_the_window_is_placed_in_the_limits_timezone_by_the_authoritys_clock() -> None:
    policy = Budget(
        name="p", uid="u", limits=(Limit(window="day", amount_micro_usd=5, timezone="Asia/Tokyo"),)
    )
    terms = scope_terms(config(policy), "p", "day", NOW)
    assert terms is not None
    assert terms.window_start == datetime(2026, 12, 6, 15, 0, tzinfo=UTC)  # midnight in Tokyo


def test_shadow_policies_unknown_windows_and_kill_switches() -> None:
    shadow = Budget(name="s", uid="u", mode="Shadow", limits=(Limit(window="day", amount_micro_usd=5),))
    killed = Budget(name="k", uid="u", kill_switch=True, limits=(Limit(window="day", amount_micro_usd=5),))
    served = config(shadow, killed)
    assert scope_terms(served, "s", "day", NOW) is None
    assert scope_terms(served, "k", "month", NOW) is None
    terms = scope_terms(served, "k", "day", NOW)
    assert terms is not None and terms.refusal == "kill_switch"
