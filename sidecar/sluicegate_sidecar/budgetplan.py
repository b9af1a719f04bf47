"""A budget policy's fixed parts, worked out once per config: its selector, its limits with their
caps, and how a request's dimensions pick its split value; and a request's scopes with what every
reservation asks of them, worked out once per Pod and split values.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from sluicegate_contract.ladder import calm_below
from sluicegate_contract.leases import scope_cap
from sluicegate_contract.schema import Budget, Limit
from sluicegate_contract.windows import zone

from .attribution import PodIdentity
from .ladder import Scope, ScopeKey

UNATTRIBUTED = "(none)"  # split value of a request that lacks the policy's splitBy dimension


class Plan(NamedTuple):
    """A policy's fixed parts, worked out once per config."""

    budget: Budget
    selector: tuple[tuple[str, str], ...]
    limits: tuple[tuple[Limit, int, int], ...]  # with the cap of each and where it stops being calm
    shared_windows: bool  # two limits on the same window kind: their scopes may coincide


def plan_of(budget: Budget) -> Plan:
    kinds = [limit.window for limit in budget.limits]
    return Plan(
        budget,
        tuple(budget.selector.items()),
        tuple(_limit_plan(budget, limit) for limit in budget.limits),
        len(set(kinds)) != len(kinds),
    )


def _limit_plan(budget: Budget, limit: Limit) -> tuple[Limit, int, int]:
    cap = scope_cap(budget, limit)
    steps = ((step.at_ppm, step.action) for step in budget.ladder)
    calm = calm_below(limit=limit.amount_micro_usd, cap=cap, steps=steps, kill_switch=budget.kill_switch)
    return limit, cap, calm


def selects(selector: tuple[tuple[str, str], ...], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector)


def split_of(budget: Budget, dimensions: Mapping[str, str]) -> str:
    if budget.split_by == "none":
        return ""
    return dimensions.get(budget.split_by) or UNATTRIBUTED


def split_dimensions(plans: Sequence[Plan]) -> tuple[str, ...]:
    """The dimensions the policies split by (what a request's scopes depend on besides its Pod)."""
    return tuple(dict.fromkeys(p.budget.split_by for p in plans if p.budget.split_by != "none"))


def validate(budgets: Sequence[Budget]) -> None:
    names = [budget.name for budget in budgets]
    if len(set(names)) != len(names):
        raise ValueError("budget policy names must be unique")
    for budget in budgets:
        for limit in budget.limits:
            zone(limit.timezone)
            if limit.amount_micro_usd < 0:
                raise ValueError(f"budget {budget.name!r}: a limit cannot be negative")
        if any(step.at_ppm < 0 for step in budget.ladder):
            raise ValueError(f"budget {budget.name!r}: a ladder step cannot be negative")


_EVER = datetime.min.replace(tzinfo=UTC)
_NEVER = datetime.max.replace(tzinfo=UTC)


class RequestScopes(NamedTuple):
    """The scopes a request is charged to, with what every reservation asks of them, worked out once
    per Pod and split values (``budget.BudgetBook`` caches them): a tuple, cheap to build."""

    pod: PodIdentity  # held, so its id (in the key) names no other Pod identity while cached
    opened: datetime  # the latest start of their windows ...
    closes: datetime  # ... and the earliest end: valid for ``opened <= now < closes``
    scopes: tuple[Scope, ...]
    enforcing: tuple[Scope, ...]  # the Enforce scopes among them (headroom, what is left)
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
        enforce,
        tuple(s.key for s in scopes),
        tuple(s.key for s in enforce),
        tuple(dict.fromkeys(s.key.policy for s in scopes)),
        (unpriced, not killed),
    )
