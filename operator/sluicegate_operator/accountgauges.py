"""The budget authority's accounts as budget readings, so BudgetPolicy status is computed by the same
``spendstatus`` code whether the spend comes from the accounts (fleet mode) or from scraped sidecars.

One account per (policy, split value, window): settled is the spend, leased is what the sidecars hold
(the status's ``reservedUSD``), holders the sidecars holding leases on it. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from sluicegate_contract.authority import AccountStatus

from .budgetgauges import Reading, SidecarBudgets

UNSPLIT_SCOPE = "all"  # the sidecar's gauges name an unsplit policy's scope so


def budgets_from_accounts(accounts: Iterable[AccountStatus]) -> SidecarBudgets:
    readings: dict[tuple[str, str, str], Reading] = {}
    totals: dict[tuple[str, str], int] = {}
    for account in accounts:
        scope = account.split or UNSPLIT_SCOPE
        remaining = max(0, account.cap_micro_usd - account.settled_micro_usd - account.leased_micro_usd)
        readings[(account.policy, scope, account.window)] = Reading(
            limit=account.cap_micro_usd,
            spent=account.settled_micro_usd,
            remaining=remaining,
            holders=account.holders,
        )
        key = (account.policy, account.window)
        totals[key] = totals.get(key, 0) + account.settled_micro_usd
    return SidecarBudgets(readings=readings, verdicts={}, totals=totals)
