"""The budget rule both sides apply: a cap's verdict at a given spend, and the one verdict vocabulary.

The sidecar enforces it per request; the operator reports it in BudgetPolicy status from the sidecars'
gauges. Pure integer arithmetic in micro-USD and parts per million: no state, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from .bookprice import ceil_div
from .money import PPM

# The words on the wire: the X-Sluicegate-Verdict header, the sluicegate_budget_verdict gauge's
# `verdict` label, the ledger. Ordered by precedence: kill switch > BLOCK > LIGHT_ONLY > DOWNGRADE > allow.
Verdict = Literal["allow", "DOWNGRADE", "LIGHT_ONLY", "BLOCK", "KILL"]
VERDICTS: tuple[Verdict, ...] = ("allow", "DOWNGRADE", "LIGHT_ONLY", "BLOCK", "KILL")
SEVERITY: dict[Verdict, int] = {verdict: rank for rank, verdict in enumerate(VERDICTS)}
# The same verdicts as BudgetPolicy.status.verdict spells them (the CRD's documented enum).
StatusVerdict = Literal["ALLOW", "DOWNGRADE", "LIGHT_ONLY", "BLOCK", "KILL_SWITCH"]
STATUS_WORDS: dict[Verdict, StatusVerdict] = {
    "allow": "ALLOW",
    "DOWNGRADE": "DOWNGRADE",
    "LIGHT_ONLY": "LIGHT_ONLY",
    "BLOCK": "BLOCK",
    "KILL": "KILL_SWITCH",
}
Step = tuple[int, Verdict]  # (at parts per million of the limit, the action from there on)


def outranks(first: Verdict, second: Verdict) -> bool:
    """True when ``first`` is strictly more severe than ``second``."""
    return SEVERITY[first] > SEVERITY[second]


def worse(first: Verdict, second: Verdict) -> Verdict:
    """The verdict that takes precedence: kill switch > BLOCK > LIGHT_ONLY > DOWNGRADE > allow."""
    return second if SEVERITY[second] > SEVERITY[first] else first


def cap_of(limit: int, steps: Iterable[Step]) -> int:
    """Where spending stops: the limit, lowered by any ladder step that BLOCKs before 100 %."""
    cap = limit
    for at_ppm, action in steps:
        if action == "BLOCK":
            cap = min(cap, at_ppm * limit // PPM)
    return cap


def judge(
    used: int, *, limit: int, cap: int, steps: Iterable[Step], action: Verdict, kill_switch: bool
) -> Verdict:
    """The verdict with ``used`` micro-USD spent or reserved against ``limit`` (``cap`` from ``cap_of``)."""
    if kill_switch:
        return "KILL"
    verdict: Verdict = "allow"
    for at_ppm, step_action in steps:
        if used * PPM >= at_ppm * limit:
            verdict = worse(verdict, step_action)
    if used >= limit:
        verdict = worse(verdict, action)
    if used >= cap and cap < limit:  # a ladder BLOCK step below 100 %
        verdict = worse(verdict, "BLOCK")
    return verdict


def calm_below(*, limit: int, cap: int, steps: Iterable[Step], kill_switch: bool) -> int:
    """The least ``used`` at which ``judge`` (same arguments) may say anything but "allow": the first
    ladder step reached (``used * PPM >= at_ppm * limit``), the limit or the cap; 0 under a kill switch.
    Below it a caller may answer "allow" without walking the ladder."""
    if kill_switch:
        return 0
    return min(limit, cap, *(ceil_div(at_ppm * limit, PPM) for at_ppm, _ in steps))


def room_left(used: int, *, cap: int, kill_switch: bool) -> int:
    """What may still be spent with ``used`` micro-USD spent or reserved (0 under a kill switch)."""
    return 0 if kill_switch else max(0, cap - used)
