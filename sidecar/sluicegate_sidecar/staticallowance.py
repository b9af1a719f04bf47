"""``failMode: static``: what a sidecar in fleet mode may spend once its lease no longer covers a
request and the budget authority cannot be reached.

Pure: no I/O; the monotonic clock is an argument. Per scope and per outage the sidecar opens one lease
of its own (``offline``) of the policy's allowance, usable for the allowance's seconds from that moment;
requests reserve their worst case on it like on any lease, so it is never overspent. The spend is
ledgered as usual and reported under that lease when the authority answers again, which records it as
settled: the accounts converge to the ledgers. During an outage the fleet can thus spend up to
``cap + sidecars x allowance``; once the authority has refused a scope for its cap (or shown it at or
over the cap), an outage grants nothing more on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sluicegate_contract.authority import AccountView, Refusal
from sluicegate_contract.schema import Budget

# What the authority's last answer may have said about a scope that leaves nothing to fall back on.
_SPENT: frozenset[Refusal] = frozenset({"kill_switch", "budget_exceeded", "unknown_policy", "window_closed"})


@dataclass(frozen=True, slots=True)
class Allowance:
    amount: int  # micro-USD one sidecar may spend per scope per outage
    seconds: float  # from when the lease ran out


def allowances(budgets: Iterable[Budget]) -> dict[str, Allowance]:
    """The allowance of each Enforce policy whose ``failMode`` is ``static``, by policy name."""
    found: dict[str, Allowance] = {}
    for budget in budgets:
        allowance = budget.static_allowance
        if budget.fail_mode == "static" and budget.mode == "Enforce" and allowance is not None:
            found[budget.name] = Allowance(allowance.amount_micro_usd, float(allowance.seconds))
    return found


def spent(account: AccountView | None, refusal: Refusal | None) -> bool:
    """True when the authority's last answer showed the scope at or over its cap, or refused it: an
    outage does not make budget, so the allowance is not for it. (Never answered: not spent.)"""
    if refusal in _SPENT:
        return True
    return account is not None and account.settled_micro_usd >= account.cap_micro_usd


def may_open(
    allowance: Allowance | None,
    *,
    unavailable: bool,
    draining: bool,
    used_this_outage: bool,
    lease_room: int,
    need: int,
    account: AccountView | None,
    refusal: Refusal | None,
) -> bool:
    """Whether to open a scope's offline lease now: the policy allows it, the authority is unreachable,
    the lease cannot cover ``need``, and this outage has not given the scope its allowance yet."""
    if allowance is None or not unavailable or draining or used_this_outage:
        return False
    if lease_room >= max(need, 1):
        return False
    return not spent(account, refusal)


def deadline(allowance: Allowance, mono: float) -> float:
    """Until when (monotonic) an offline lease opened at ``mono`` may be reserved on."""
    return mono + allowance.seconds
