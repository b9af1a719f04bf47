"""The sidecars' budget gauges (named in ``sluicegate_contract.sidecarpod``), read from their metrics text.

Pure: a small parser of the ``sluicegate_budget_*`` families; no Prometheus library, no I/O. A split
policy's scope is ``max`` (its most-used split value on that sidecar); the policy-spent gauge carries
the policy's total over all split values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sluicegate_contract.ladder import VERDICTS, Verdict, worse
from sluicegate_contract.money import PPM
from sluicegate_contract.sidecarpod import (
    GAUGE_BUDGET_LIMIT,
    GAUGE_BUDGET_POLICY_SPENT,
    GAUGE_BUDGET_REMAINING,
    GAUGE_BUDGET_SPENT,
    GAUGE_BUDGET_VERDICT,
)

_FAMILIES = {
    GAUGE_BUDGET_LIMIT: "limit",
    GAUGE_BUDGET_SPENT: "spent",
    GAUGE_BUDGET_REMAINING: "remaining",
    GAUGE_BUDGET_VERDICT: "verdict",
    GAUGE_BUDGET_POLICY_SPENT: "total",
}
_VERDICT_OF: dict[str, Verdict] = {verdict: verdict for verdict in VERDICTS}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?[0-9]+)?[ \t]*$")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(?:,|$)')
_ESCAPE = re.compile(r"\\(.)")


class MetricsError(ValueError):
    """A sidecar's metrics text that cannot be read."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One sidecar's gauges for one (policy, scope, window), in micro-USD."""

    limit: int
    spent: int
    remaining: int
    holders: int | None = None  # sidecars holding leases on it (from the authority's accounts only)


@dataclass(frozen=True, slots=True)
class SidecarBudgets:
    readings: Mapping[tuple[str, str, str], Reading]  # (policy, scope, window)
    verdicts: Mapping[tuple[str, str], Verdict]  # (policy, scope) → the strictest verdict gauged 1
    totals: Mapping[tuple[str, str], int] = field(
        default_factory=dict
    )  # (policy, window) → all scopes' spent


def parse_budget_metrics(text: str) -> SidecarBudgets:
    """The budget gauges in a Prometheus text exposition; other families are skipped unread."""
    gauges: dict[str, dict[tuple[str, str, str], Decimal]] = {kind: {} for kind in _FAMILIES.values()}
    for number, line in enumerate(text.splitlines(), 1):
        kind = _FAMILIES.get(line.split("{", 1)[0].split(" ", 1)[0].strip())
        if kind is None:
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise MetricsError(f"line {number}: not a sample")
        labels = _labels(match.group(2) or "", number)
        try:
            value = Decimal(match.group(3))
        except InvalidOperation:
            raise MetricsError(f"line {number}: bad value {match.group(3)[:20]!r}") from None
        if not value.is_finite():
            raise MetricsError(f"line {number}: value {match.group(3)}")
        third = labels.get("verdict" if kind == "verdict" else "window", "")
        gauges[kind][(labels.get("policy", ""), labels.get("scope", ""), third)] = value
    readings = {
        key: Reading(
            limit=_micro(limit),
            spent=_micro(gauges["spent"].get(key, Decimal(0))),
            remaining=_micro(gauges["remaining"].get(key, Decimal(0))),
        )
        for key, limit in gauges["limit"].items()
    }
    verdicts: dict[tuple[str, str], Verdict] = {}
    for (policy, scope, word), value in sorted(gauges["verdict"].items()):
        verdict = _VERDICT_OF.get(word)
        if value == 1 and verdict is not None:
            verdicts[(policy, scope)] = worse(verdicts.get((policy, scope), "allow"), verdict)
    totals = {(policy, window): _micro(value) for (policy, _, window), value in gauges["total"].items()}
    return SidecarBudgets(readings=readings, verdicts=verdicts, totals=totals)


def _labels(text: str, number: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    position, end = 0, len(text.rstrip(", \t"))
    while position < end:
        match = _LABEL.match(text, position)
        if match is None:
            raise MetricsError(f"line {number}: bad labels")
        raw = match.group(2)
        labels[match.group(1)] = _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw)
        position = match.end()
    return labels


def _micro(usd: Decimal) -> int:
    return int((usd * PPM).to_integral_value())
