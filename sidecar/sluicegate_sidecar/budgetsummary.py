"""What the budget gauges export: per policy and window, never per split value (fault 25). Pure.

A split policy (``splitBy: endCustomer``, team, user …) has one scope per value seen; exporting each
as series grew /metrics without bound. Each (policy, window) gives instead: the figures of its
most-used scope (the only scope of an unsplit policy, labelled ``all``; of a split one, ``max``),
the policy's total spend over all its scopes, and how many scopes stand at each verdict. The
per-value view is the ledger's (``sluicegate ledger summary --by …``) and the reports'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sluicegate_contract.ladder import Verdict
from sluicegate_contract.windows import WindowKind

from .ladder import Scope, room_left, verdict_at

UNSPLIT_SCOPE = "all"
MOST_USED_SCOPE = "max"  # a split policy's most-used value, whichever it is


@dataclass(slots=True)
class PolicyWindow:
    """One policy's window, summed over its scopes."""

    policy: str
    window: WindowKind
    window_start: datetime
    scope: str  # UNSPLIT_SCOPE or MOST_USED_SCOPE
    limit_micro_usd: int
    spent_micro_usd: int = 0  # every scope's spend
    top_spent_micro_usd: int = 0  # of the most-used scope
    top_used_micro_usd: int = -1  # spent + reserved of the most-used scope (-1: none yet)
    top_remaining_micro_usd: int = 0
    top_verdict: Verdict = "allow"
    verdicts: dict[Verdict, int] = field(default_factory=dict)  # scopes at each verdict


def summarize(scopes: Iterable[tuple[Scope, int, int]]) -> list[PolicyWindow]:
    """``BudgetBook.open_scopes`` folded to one ``PolicyWindow`` per policy and window."""
    windows: dict[tuple[str, WindowKind, datetime], PolicyWindow] = {}
    for scope, spent, reserved in scopes:
        key = scope.key
        summary = windows.get((key.policy, key.window, key.start))
        if summary is None:
            label = MOST_USED_SCOPE if key.split else UNSPLIT_SCOPE
            summary = PolicyWindow(key.policy, key.window, key.start, label, scope.limit_micro_usd)
            windows[(key.policy, key.window, key.start)] = summary
        used = spent + reserved
        verdict = verdict_at(scope, used)
        summary.spent_micro_usd += spent
        summary.verdicts[verdict] = summary.verdicts.get(verdict, 0) + 1
        if used > summary.top_used_micro_usd:
            summary.top_used_micro_usd = used
            summary.top_spent_micro_usd = spent
            summary.top_remaining_micro_usd = room_left(scope, used)
            summary.top_verdict = verdict
    return list(windows.values())
