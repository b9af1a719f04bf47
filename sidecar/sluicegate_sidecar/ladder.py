"""Budget scopes: a scope's cap, verdict and room at a given spend, by the contract's ladder rule.

Pure arithmetic for ``budget.BudgetBook``: holds no state, no I/O, no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from sluicegate_contract.ladder import Verdict, judge
from sluicegate_contract.ladder import room_left as _room_left
from sluicegate_contract.schema import Budget
from sluicegate_contract.windows import WindowKind

from .attribution import PodIdentity


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

    @property
    def label(self) -> str:
        split = f"[{self.budget.split_by}={self.key.split}]" if self.key.split else ""
        return f"{self.key.policy}{split}/{self.key.window}"


def verdict_at(scope: Scope, used: int) -> Verdict:
    """The scope's verdict with ``used`` micro-USD spent or reserved."""
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


_EVER = datetime.min.replace(tzinfo=UTC)
_NEVER = datetime.max.replace(tzinfo=UTC)


class RequestScopes(NamedTuple):
    """The scopes a request is charged to, with what every reservation asks of them, worked out once
    per Pod and split values (``budget.BudgetBook`` caches them): a tuple, cheap to build."""

    pod: PodIdentity  # held, so its id (in the key) names no other Pod identity while cached
    opened: datetime  # the latest start of their windows ...
    closes: datetime  # ... and the earliest end: valid for ``opened <= now < closes``
    scopes: tuple[Scope, ...]
    keys: tuple[ScopeKey, ...]  # their keys (a reservation's) ...
    enforce: tuple[ScopeKey, ...]  # ... those of the Enforce scopes among them ...
    policies: tuple[str, ...]  # ... and their policies, once each (a ledger line's budgetScopes)
    admits: tuple[bool, bool]  # no Enforce scope refuses by its config alone: (unpriced, priced)


def request_scopes(pod: PodIdentity, scopes: list[Scope]) -> RequestScopes:
    enforce = tuple(s for s in scopes if not s.shadow)
    killed = any(s.budget.kill_switch for s in enforce)
    unpriced = not killed and all(s.budget.allow_unpriced for s in enforce)
    return RequestScopes(
        pod,
        max((s.key.start for s in scopes), default=_EVER),
        min((s.end for s in scopes), default=_NEVER),
        tuple(scopes),
        tuple(s.key for s in scopes),
        tuple(s.key for s in enforce),
        tuple(dict.fromkeys(s.key.policy for s in scopes)),
        (unpriced, not killed),
    )
