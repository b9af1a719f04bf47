"""BudgetPolicy status from the budget authority's accounts (fleet mode): the spend reporter's source
of readings is the accounts in PostgreSQL, not the sidecars' metrics. Statuses, alerts, Events and
webhooks stay ``SpendReporter``'s; only where the numbers come from changes.
"""

from __future__ import annotations

from typing import Protocol

from sluicegate_contract.authority import AccountStatus

from .accountgauges import budgets_from_accounts
from .authority.store import StoreUnavailable
from .spendscrape import SpendReporter
from .spendstatus import SidecarMetrics

SOURCE = "budget-authority"


class Accounts(Protocol):
    async def accounts(self, namespace: str) -> list[AccountStatus]: ...


class AccountsSpendReporter(SpendReporter):
    """A ``SpendReporter`` whose one "sidecar" is the authority's accounts of the namespace."""

    def bind_accounts(self, store: Accounts) -> AccountsSpendReporter:
        self._accounts = store
        return self

    async def sidecars(self, namespace: str) -> tuple[SidecarMetrics, ...]:
        try:
            found = await self._accounts.accounts(namespace)
        except StoreUnavailable as exc:
            return (SidecarMetrics(SOURCE, {}, None, str(exc) or "database unavailable", authority=True),)
        return (SidecarMetrics(SOURCE, {}, budgets_from_accounts(found), authority=True),)
