"""BudgetPolicy status from the sidecars' budget gauges: parse their metrics text, sum it per policy and
window, and tell which alert thresholds were newly crossed (once per threshold per window).

Pure: no HTTP, kopf, Kubernetes or Prometheus library; the time is an argument.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sluicegate_contract.ladder import STATUS_WORDS, Step, Verdict, cap_of, judge, worse
from sluicegate_contract.money import PPM
from sluicegate_contract.timestamps import format_time
from sluicegate_contract.windows import window_bounds

from .budgetgauges import Reading, SidecarBudgets
from .crparse import BudgetPolicySpec, ResourceError, meta_of, parse_spec
from .prices import usd_per_mtok_to_micro

ALERTS_ANNOTATION = "sluicegate.io/alerted-thresholds"
CONDITION = "SpendReported"
WEBHOOK_CONDITION = "AlertWebhooks"  # False when a webhook's URL is refused (alerttargets), saying why
_ADJECTIVES = {"day": "daily", "week": "weekly", "month": "monthly"}


@dataclass(frozen=True, slots=True)
class SidecarMetrics:
    """What one injected Pod answered: its budgets, or why there are none."""

    pod: str
    labels: Mapping[str, str]
    budgets: SidecarBudgets | None
    error: str = ""
    authority: bool = False  # the budget authority's accounts: covers every policy, no selector applies


@dataclass(frozen=True, slots=True)
class ThresholdAlert:
    namespace: str
    policy: str
    window: str
    threshold: float  # as written in spec.alerts.thresholds
    spent_usd: int | float  # of the most-spent scope (the whole policy when not split)
    limit_usd: int | float
    scope: str  # "all", or the split value that crossed
    window_start: str
    window_end: str

    @property
    def message(self) -> str:
        who = {"all": "", "max": " for its most-spent split value"}.get(self.scope, f" for {self.scope}")
        return (
            f"BudgetPolicy {self.namespace}/{self.policy}: {_percent(self.threshold)} of the "
            f"{_ADJECTIVES.get(self.window, self.window)} limit reached{who}: "
            f"${_plain(Decimal(str(self.spent_usd)))} spent of ${_plain(Decimal(str(self.limit_usd)))} "
            f"since {self.window_start} (summed over the sidecars)"
        )


@dataclass(frozen=True, slots=True)
class SpendStatus:
    """The status fields to merge-patch, the alerts to raise, and the alert memory to record."""

    fields: Mapping[str, Any]
    alerts: tuple[ThresholdAlert, ...] = ()
    memory: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    webhooks: tuple[tuple[str, str, str], ...] = ()  # (Secret name, key, slack|generic)

    def differs_from(self, current: Mapping[str, Any] | None) -> bool:
        current = current or {}
        return any(current.get(key) != value for key, value in self.fields.items())

    def as_patch(self) -> dict[str, Any]:
        return {"status": dict(self.fields)}

    def memory_patch(self) -> dict[str, Any]:
        """The merge patch that records the alerts raised, as an annotation on the policy."""
        text = json.dumps(dict(self.memory), sort_keys=True, separators=(",", ":"))
        return {"metadata": {"annotations": {ALERTS_ANNOTATION: text}}}


def usd_number(micro: int) -> int | float:
    """Micro-USD as the JSON number the CRD's ``type: number`` fields hold (500, 251.5, 0.000123)."""
    whole, rest = divmod(micro, PPM)
    return whole if rest == 0 else float(Decimal(micro) / PPM)


def _plain(number: Decimal) -> str:
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _percent(threshold: float) -> str:
    return f"{_plain(Decimal(str(threshold)) * 100)}%"


# Aggregation.


@dataclass(frozen=True, slots=True)
class _Window:
    fields: dict[str, Any]
    top_spent: int  # the most-spent scope, summed over the sidecars
    top_scope: str
    limit: int
    verdict: Verdict


def _ppm(fraction: float) -> int:
    return round(fraction * PPM)  # as render does


def _steps(spec: BudgetPolicySpec) -> list[Step]:
    return [(_ppm(step.at), step.action) for step in spec.ladder]


def _judge(reading: Reading, spec: BudgetPolicySpec) -> tuple[int, Verdict]:
    """(spent + reserved, verdict) of one sidecar's scope, by the ladder rule the sidecar applies."""
    if spec.kill_switch:
        return reading.spent, "KILL"
    limit, steps = reading.limit, _steps(spec)
    cap = cap_of(limit, steps)
    # remaining = cap - spent - reserved; at 0 only "at least the cap" is known.
    used = max(reading.spent, cap - reading.remaining if reading.remaining > 0 else cap)
    verdict = judge(used, limit=limit, cap=cap, steps=steps, action=spec.action, kill_switch=False)
    return used, verdict


def _window(
    name: str, spec: BudgetPolicySpec, index: int, reports: Sequence[SidecarBudgets], now: datetime
) -> _Window:
    limit_spec = spec.limits[index]
    readings = [
        (scope, reading)
        for report in reports
        for (policy, scope, window), reading in report.readings.items()
        if policy == name and window == limit_spec.window
    ]
    limit = max((r.limit for _, r in readings), default=usd_per_mtok_to_micro(limit_spec.amount_usd))
    spent = reserved = 0
    used_by_scope: dict[str, int] = {}
    spent_by_scope: dict[str, int] = {}
    verdict: Verdict = "KILL" if spec.kill_switch else "allow"
    for scope, reading in readings:
        used, scope_verdict = _judge(reading, spec)
        reserved += used - reading.spent
        used_by_scope[scope] = used_by_scope.get(scope, 0) + used
        spent_by_scope[scope] = spent_by_scope.get(scope, 0) + reading.spent
        verdict = worse(verdict, scope_verdict)
    for report in reports:  # a split policy's total is its own gauge (its scopes are not exported)
        total = report.totals.get((name, limit_spec.window))
        spent += (
            total
            if total is not None
            else sum(
                reading.spent
                for (policy, _, window), reading in report.readings.items()
                if policy == name and window == limit_spec.window
            )
        )
    cap = cap_of(limit, _steps(spec))
    top_scope = max(sorted(spent_by_scope), key=spent_by_scope.__getitem__, default="all")
    holders = [r.holders for _, r in readings if r.holders is not None]
    fields: dict[str, Any] = {
        "window": limit_spec.window,
        "spentUSD": usd_number(spent),
        "reservedUSD": usd_number(reserved),
        "remainingUSD": usd_number(max(0, cap - max(used_by_scope.values(), default=0))),
        "limitUSD": usd_number(limit),
        "verdict": STATUS_WORDS[verdict],
    }
    if holders:  # per account; a split policy shows its busiest split value's
        fields["leaseHolders"] = max(holders)
    try:
        start, end = window_bounds(limit_spec.window, limit_spec.timezone, now)
    except ValueError:
        pass  # render reports the unknown zone on the Ready condition
    else:
        fields["windowStart"], fields["windowEnd"] = format_time(start), format_time(end)
    return _Window(fields, spent_by_scope.get(top_scope, 0), top_scope, limit, verdict)


def alert_memory(policy: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The alerts already raised, per window: ``{"month": {"windowStart": ..., "threshold": 0.8}}``."""
    annotations = (policy.get("metadata") or {}).get("annotations") or {}
    try:
        memory = json.loads(annotations.get(ALERTS_ANNOTATION) or "{}")
    except ValueError:
        return {}
    if not isinstance(memory, dict):
        return {}
    return {
        str(window): {"windowStart": str(entry.get("windowStart", "")), "threshold": entry["threshold"]}
        for window, entry in memory.items()
        if isinstance(entry, dict) and isinstance(entry.get("threshold"), int | float)
    }


def merge_memory(*memories: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Several alert memories in one: per window, the latest window start, then the highest threshold."""
    merged: dict[str, dict[str, Any]] = {}
    for memory in memories:
        for window, entry in memory.items():
            known = merged.get(window)
            key = (str(entry.get("windowStart", "")), float(entry.get("threshold", 0)))
            if known is None or key > (known["windowStart"], float(known["threshold"])):
                merged[window] = {"windowStart": key[0], "threshold": entry.get("threshold", 0)}
    return merged


def _condition(
    current: Sequence[Mapping[str, Any]] | None, desired: Mapping[str, str], generation: int, now: datetime
) -> list[dict[str, Any]]:
    """``current`` with the condition of ``desired``'s type set in place (others untouched, order kept)."""
    out: list[dict[str, Any]] = []
    found = False
    for existing in current or ():
        if existing.get("type") != desired["type"]:
            out.append(dict(existing))
            continue
        found = True
        since = existing.get("lastTransitionTime") if existing.get("status") == desired["status"] else None
        out.append(
            {**desired, "observedGeneration": generation, "lastTransitionTime": since or format_time(now)}
        )
    if not found:
        out.append({**desired, "observedGeneration": generation, "lastTransitionTime": format_time(now)})
    return out


def webhook_condition(refusals: Sequence[str], total: int) -> dict[str, str] | None:
    """The AlertWebhooks condition: why each refused webhook was refused (None without webhooks)."""
    if total == 0:
        return None
    if not refusals:
        message = f"{total} alert webhook{'s' if total > 1 else ''} allowed"
        return {"type": WEBHOOK_CONDITION, "status": "True", "reason": "Allowed", "message": message}
    return {
        "type": WEBHOOK_CONDITION,
        "status": "False",
        "reason": "WebhookRefused",
        "message": "; ".join(refusals),
    }


def _scrape_condition(total: int, failures: Sequence[str]) -> dict[str, str]:
    named = ", ".join(failures[:3]) + (f" and {len(failures) - 3} more" if len(failures) > 3 else "")
    if total == 0:
        message = "no injected Pod matches this policy"
        return {"type": CONDITION, "status": "True", "reason": "NoSidecars", "message": message}
    if not failures:
        message = f"{total} sidecar{'s' if total > 1 else ''} reported"
        return {"type": CONDITION, "status": "True", "reason": "Reported", "message": message}
    if len(failures) == total:
        message = f"none of {total} sidecars answered: {named}"
        return {"type": CONDITION, "status": "False", "reason": "SidecarsUnreachable", "message": message}
    message = f"{total - len(failures)} of {total} sidecars reported; {len(failures)} did not: {named}"
    return {"type": CONDITION, "status": "True", "reason": "PartiallyReported", "message": message}


def _accounts_condition(error: str) -> dict[str, str]:
    if error:
        message = f"the budget authority's accounts could not be read: {error}"
        return {"type": CONDITION, "status": "False", "reason": "AccountsUnavailable", "message": message}
    message = "read from the budget authority's accounts"
    return {"type": CONDITION, "status": "True", "reason": "Accounts", "message": message}


def _crossing(
    window: _Window,
    thresholds: Sequence[float],
    memory: Mapping[str, Mapping[str, Any]],
    namespace: str,
    policy: str,
) -> tuple[float | None, ThresholdAlert | None]:
    """The highest threshold crossed in this window so far, and the alert to raise when it is new."""
    start, kind = str(window.fields.get("windowStart", "")), str(window.fields["window"])
    before = memory.get(kind)
    alerted = _ppm(float(before["threshold"])) if before and before["windowStart"] == start else 0
    crossed = [t for t in thresholds if window.top_spent * PPM >= _ppm(t) * window.limit]
    known = [t for t in thresholds if t in crossed or 0 < _ppm(t) <= alerted]
    if not crossed or _ppm(crossed[-1]) <= alerted:
        return (known[-1] if known else None), None
    alert = ThresholdAlert(
        namespace=namespace,
        policy=policy,
        window=kind,
        threshold=crossed[-1],
        spent_usd=usd_number(window.top_spent),
        limit_usd=usd_number(window.limit),
        scope=window.top_scope,
        window_start=start,
        window_end=str(window.fields.get("windowEnd", "")),
    )
    return known[-1], alert


def spend_status(
    policy: Mapping[str, Any],
    sidecars: Sequence[SidecarMetrics],
    *,
    now: datetime,
    alerted: Mapping[str, Mapping[str, Any]] | None = None,
    webhooks_checked: Mapping[str, str] | None = None,
) -> SpendStatus | None:
    """The spend part of a BudgetPolicy's status from what its sidecars reported (None: spec unreadable).

    ``alerted`` (default: the policy's annotation) is the alerts already raised. Without any answer from
    the sidecars it selects, the last windows are kept and only the condition changes.
    ``webhooks_checked`` is the AlertWebhooks condition (see ``webhook_condition``); None removes it.
    """
    try:
        spec = parse_spec(policy, BudgetPolicySpec)
        meta = meta_of(policy)
    except ResourceError:
        return None
    selector = spec.selector.match_labels
    selected = [s for s in sidecars if s.authority or all(s.labels.get(k) == v for k, v in selector.items())]
    reports = [s.budgets for s in selected if s.budgets is not None]
    failures = [f"{s.pod} ({s.error})" for s in selected if s.budgets is None]
    status = policy.get("status") or {}
    source = next((s for s in selected if s.authority), None)
    reported = (
        _scrape_condition(len(selected), failures) if source is None else _accounts_condition(source.error)
    )
    conditions = _condition(status.get("conditions"), reported, meta.generation, now)
    if webhooks_checked is None:
        conditions = [c for c in conditions if c.get("type") != WEBHOOK_CONDITION]
    else:
        conditions = _condition(conditions, webhooks_checked, meta.generation, now)
    fields: dict[str, Any] = {"conditions": conditions}
    webhooks = tuple((w.url_secret_ref.name, w.url_secret_ref.key, w.format) for w in spec.alerts.webhooks)
    if selected and not reports:
        return SpendStatus(fields=fields, webhooks=webhooks)
    memory = merge_memory(alert_memory(policy) if alerted is None else alerted)
    thresholds = sorted(spec.alerts.thresholds, key=_ppm)
    windows = [_window(meta.name, spec, index, reports, now) for index in range(len(spec.limits))]
    alerts: list[ThresholdAlert] = []
    highest: float | None = None
    for window in windows:
        crossed, alert = _crossing(window, thresholds, memory, meta.namespace or "", meta.name)
        if alert is not None:
            alerts.append(alert)
            memory[alert.window] = {"windowStart": alert.window_start, "threshold": alert.threshold}
        if crossed is not None and (highest is None or _ppm(crossed) > _ppm(highest)):
            highest = crossed
    verdict: Verdict = "KILL" if spec.kill_switch else "allow"
    for w in windows:
        verdict = worse(verdict, w.verdict)
    for report in reports:
        for (name, _), scope_verdict in report.verdicts.items():
            verdict = worse(verdict, scope_verdict) if name == meta.name else verdict
    fields.update(
        windows=[w.fields for w in windows], verdict=STATUS_WORDS[verdict], lastAlertThreshold=highest
    )
    return SpendStatus(fields=fields, alerts=tuple(alerts), memory=memory, webhooks=webhooks)


def alert_payload(alert: ThresholdAlert, style: str) -> dict[str, Any]:
    """The body of a webhook: Slack-compatible ``{"text": ...}``, or the alert as generic JSON."""
    if style == "slack":
        return {"text": f":warning: {alert.message}"}
    return {
        "kind": "BudgetThresholdCrossed",
        "namespace": alert.namespace,
        "policy": alert.policy,
        "window": alert.window,
        "scope": alert.scope,
        "threshold": alert.threshold,
        "spentUSD": alert.spent_usd,
        "limitUSD": alert.limit_usd,
        "windowStart": alert.window_start,
        "windowEnd": alert.window_end,
        "message": alert.message,
    }
