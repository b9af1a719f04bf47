"""BudgetPolicy status from the budget authority's accounts: pure conversion and status fields."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

from sluicegate_contract.authority import AccountStatus
from sluicegate_operator.accountgauges import budgets_from_accounts
from sluicegate_operator.spendstatus import SidecarMetrics, spend_status
from tests.support.crdvalidate import load_crds, validate

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
CRDS = Path(__file__).resolve().parents[2] / "crds"


def account(split: str, settled: int, leased: int, holders: int, policy: str = "monthly") -> AccountStatus:
    return AccountStatus(
        namespace="team-a",
        policy=policy,
        split=split,
        window="month",
        window_start="2026-11-01T00:00:00Z",
        window_end="2026-12-01T00:00:00Z",
        cap_micro_usd=100_000_000,
        settled_micro_usd=settled,
        leased_micro_usd=leased,
        holders=holders,
    )


def policy(**spec: object) -> dict[str, object]:
    return {
        "apiVersion": "sluicegate.io/v1alpha1",
        "kind": "BudgetPolicy",
        "metadata": {"name": "monthly", "namespace": "team-a", "generation": 3, "annotations": {}},
        "spec": {
            "selector": {"matchLabels": {"app": "chat"}},  # accounts hold no Pod labels: not applied
            "limits": [{"window": "month", "amountUSD": 100}],
            "action": "BLOCK",
            "alerts": {"thresholds": [0.5]},
            **spec,
        },
    }


def authority(*accounts: AccountStatus, error: str = "") -> SidecarMetrics:
    budgets = None if error else budgets_from_accounts(accounts)
    return SidecarMetrics("budget-authority", {}, budgets, error, authority=True)


def test_an_unsplit_policys_status_shows_the_accounts_settled_leased_remaining_and_lease_holders() -> None:
    source = authority(account("", 40_000_000, 15_000_000, 3), account("", 99, 0, 0, policy="other"))
    result = spend_status(policy(), [source], now=NOW)
    assert result is not None
    (window,) = result.fields["windows"]
    assert (window["spentUSD"], window["reservedUSD"], window["remainingUSD"]) == (40, 15, 45)
    assert (window["limitUSD"], window["leaseHolders"], window["verdict"]) == (100, 3, "ALLOW")
    (condition,) = result.fields["conditions"]
    assert (condition["reason"], condition["message"]) == (
        "Accounts",
        "read from the budget authority's accounts",
    )
    updated = copy.deepcopy(policy())
    updated["status"] = {k: v for k, v in result.fields.items() if v is not None}  # a merge patch
    assert validate(updated, load_crds(CRDS)) == []


def test_a_split_policy_sums_its_values_spend_and_alerts_on_the_most_spent_value() -> None:
    source = authority(account("red", 60_000_000, 5_000_000, 2), account("blue", 10_000_000, 0, 1))
    result = spend_status(policy(splitBy="team"), [source], now=NOW)
    assert result is not None
    (window,) = result.fields["windows"]
    assert (window["spentUSD"], window["remainingUSD"], window["leaseHolders"]) == (70, 35, 2)
    (alert,) = result.alerts
    assert (alert.scope, alert.spent_usd, alert.threshold) == ("red", 60, 0.5)


def test_an_unreadable_database_keeps_the_last_windows_and_says_why() -> None:
    before = policy()
    before["status"] = {"windows": [{"window": "month", "spentUSD": 7}]}
    result = spend_status(before, [authority(error="connection refused")], now=NOW)
    assert result is not None
    assert "windows" not in result.fields  # the last known windows stay as they are
    (condition,) = result.fields["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "AccountsUnavailable")
    assert "connection refused" in condition["message"]
