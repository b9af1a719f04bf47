"""Sidecar budget metrics for the operator's spend tests, made by the sidecar's own registry."""

from __future__ import annotations

from prometheus_client import generate_latest

from sluicegate_sidecar.metrics import Metrics

Scope = tuple[
    str, str, str, float, float, float, str
]  # policy, scope, window, limit, spent, remaining, verdict
VERDICTS = ("allow", "DOWNGRADE", "LIGHT_ONLY", "BLOCK", "KILL")


def budget_exposition(*scopes: Scope, totals: dict[tuple[str, str], float] | None = None) -> str:
    """What a sidecar's /metrics serves, with its budget gauges set as its _refresh_budget_gauges sets them
    (``totals``: the policy-level spent per (policy, window), as split policies export it)."""
    metrics = Metrics()
    for (policy, window), total in (totals or {}).items():
        metrics.budget_policy_spent.labels(policy, window).set(total)
    metrics.spend.labels("ns", "app", "t", "s", "f", "gpt-4o-mini", "openai", "light").inc(0.5)
    for policy, scope, window, limit, spent, remaining, verdict in scopes:
        metrics.budget_limit.labels(policy, scope, window).set(limit)
        metrics.budget_spent.labels(policy, scope, window).set(spent)
        metrics.budget_remaining.labels(policy, scope, window).set(remaining)
        for name in VERDICTS:
            metrics.budget_verdict.labels(policy, scope, name).set(1 if name == verdict else 0)
    return generate_latest(metrics.registry).decode()
