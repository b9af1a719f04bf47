"""What a namespace's sealed config says about one budget scope: its cap, its window, a kill switch.

Pure: takes the verified config and the time; the store asks it inside each transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sluicegate_contract.authority import Refusal, WindowKind
from sluicegate_contract.leases import scope_cap
from sluicegate_contract.schema import Config
from sluicegate_contract.windows import window_bounds


@dataclass(frozen=True, slots=True)
class Terms:
    cap: int
    window_start: datetime
    window_end: datetime
    refusal: Refusal | None = None  # kill_switch: grant nothing, revoke what is out


TermsFn = Callable[[str, str, WindowKind, datetime], "Terms | None"]  # (policy, split, window, now)


def scope_terms(config: Config, policy: str, window: WindowKind, now: datetime) -> Terms | None:
    """The terms of ``policy``'s ``window`` limit at ``now``; None when the config has no such
    Enforce policy or limit. Two limits on one window kind: the smaller cap wins (as in the sidecar)."""
    budget = next((b for b in config.budgets if b.name == policy and b.mode == "Enforce"), None)
    if budget is None:
        return None
    limits = [limit for limit in budget.limits if limit.window == window]
    if not limits:
        return None
    limit = min(limits, key=lambda item: scope_cap(budget, item))
    start, end = window_bounds(window, limit.timezone, now)
    return Terms(
        cap=scope_cap(budget, limit),
        window_start=start,
        window_end=end,
        refusal="kill_switch" if budget.kill_switch else None,
    )


def terms_for(configs: Mapping[str, Config], namespace: str) -> TermsFn:
    """The terms function of one namespace, over the configs served when it is called."""

    def terms(policy: str, split: str, window: WindowKind, now: datetime) -> Terms | None:
        config = configs.get(namespace)
        return None if config is None else scope_terms(config, policy, window, now)

    return terms
