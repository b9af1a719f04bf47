"""Budget scopes and the ladder: a scope's cap, verdict and room at a given spend, in integer micro-USD.

Pure arithmetic for ``budget.BudgetBook``: holds no state, no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple

from sluicegate_contract.leases import scope_cap as scope_cap  # re-exported: one cap rule for both sides
from sluicegate_contract.schema import Budget
from sluicegate_contract.windows import WindowKind

Verdict = Literal["allow", "DOWNGRADE", "LIGHT_ONLY", "BLOCK", "KILL"]
_SEVERITY: dict[Verdict, int] = {"allow": 0, "DOWNGRADE": 1, "LIGHT_ONLY": 2, "BLOCK": 3, "KILL": 4}
_PPM = 1_000_000


def outranks(first: Verdict, second: Verdict) -> bool:
    """True when ``first`` is strictly more severe than ``second``."""
    return _SEVERITY[first] > _SEVERITY[second]


def worse(first: Verdict, second: Verdict) -> Verdict:
    """The verdict that takes precedence: kill switch > BLOCK > LIGHT_ONLY > DOWNGRADE > allow."""
    return second if _SEVERITY[second] > _SEVERITY[first] else first


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

    @property
    def shadow(self) -> bool:
        return self.budget.mode == "Shadow"

    @property
    def label(self) -> str:
        split = f"[{self.budget.split_by}={self.key.split}]" if self.key.split else ""
        return f"{self.key.policy}{split}/{self.key.window}"


def _step_reached(used: int, at_ppm: int, limit: int) -> bool:
    return used * _PPM >= at_ppm * limit


def verdict_at(scope: Scope, used: int) -> Verdict:
    """The scope's verdict with ``used`` micro-USD spent or reserved."""
    budget = scope.budget
    if budget.kill_switch:
        return "KILL"
    verdict: Verdict = "allow"
    for step in budget.ladder:
        if _step_reached(used, step.at_ppm, scope.limit_micro_usd):
            verdict = worse(verdict, step.action)
    if used >= scope.limit_micro_usd:
        verdict = worse(verdict, budget.action)
    if used >= scope.cap_micro_usd and scope.cap_micro_usd < scope.limit_micro_usd:
        verdict = worse(verdict, "BLOCK")
    return verdict


def room_left(scope: Scope, used: int) -> int:
    """What ``scope`` may still take with ``used`` micro-USD spent or reserved (0 under a kill switch)."""
    return 0 if scope.budget.kill_switch else max(0, scope.cap_micro_usd - used)
