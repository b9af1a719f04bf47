"""Budget scopes: a scope's cap, verdict and room at a given spend, by the contract's ladder rule.

Pure arithmetic for ``budget.BudgetBook``: holds no state, no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sluicegate_contract.ladder import Verdict, judge
from sluicegate_contract.ladder import room_left as _room_left
from sluicegate_contract.schema import Budget
from sluicegate_contract.windows import WindowKind


class ScopeKey(NamedTuple):
    """One counter: a policy, its split value ("" when not split), a window and when it started."""

    policy: str
    split: str
    window: WindowKind
    start: datetime


class Scope(NamedTuple):  # tuples: built for every request, so cheap to build and hash
    key: ScopeKey
    end: datetime
    budget: Budget
    limit_micro_usd: int
    cap_micro_usd: int  # the limit, or lower when a ladder step BLOCKs before 100 %
    shadow: bool  # the policy's mode is Shadow: it records spend and never refuses
    calm: int  # below this much spent or reserved the verdict is "allow" (contract ``calm_below``)

    @property
    def label(self) -> str:
        split = f"[{self.budget.split_by}={self.key.split}]" if self.key.split else ""
        return f"{self.key.policy}{split}/{self.key.window}"


def verdict_at(scope: Scope, used: int) -> Verdict:
    """The scope's verdict with ``used`` micro-USD spent or reserved."""
    if used < scope.calm:  # the common case, without walking the ladder
        return "allow"
    budget = scope.budget
    return judge(
        used,
        limit=scope.limit_micro_usd,
        cap=scope.cap_micro_usd,
        steps=((step.at_ppm, step.action) for step in budget.ladder),
        action=budget.action,
        kill_switch=budget.kill_switch,
    )


def room_left(scope: Scope, used: int) -> int:
    """What ``scope`` may still take with ``used`` micro-USD spent or reserved (0 under a kill switch)."""
    return _room_left(used, cap=scope.cap_micro_usd, kill_switch=scope.budget.kill_switch)
