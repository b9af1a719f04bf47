"""Prometheus metrics of one sidecar: one registry, built at startup, label values bounded.

Label values outside the configured models, tiers and scopes fold into ``other`` (fault 25);
``user`` and ``endCustomer`` are never labels, and the budget gauges are per policy and window, never
per split value (``budgetsummary``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sluicegate_contract.sidecarpod import (
    GAUGE_BUDGET_LIMIT,
    GAUGE_BUDGET_POLICY_SPENT,
    GAUGE_BUDGET_REMAINING,
    GAUGE_BUDGET_SPENT,
    GAUGE_BUDGET_VERDICT,
)

METRIC_NAMES = (
    "sluicegate_requests_total",
    "sluicegate_spend_usd_total",
    "sluicegate_tokens_total",
    "sluicegate_request_duration_seconds",
    "sluicegate_overhead_seconds",
    "sluicegate_fallbacks_total",
    GAUGE_BUDGET_LIMIT,
    GAUGE_BUDGET_SPENT,
    GAUGE_BUDGET_REMAINING,
    GAUGE_BUDGET_VERDICT,
    GAUGE_BUDGET_POLICY_SPENT,
    "sluicegate_budget_scopes",
    "sluicegate_config_serial",
    "sluicegate_config_rejected_total",
    "sluicegate_unpriced_requests_total",
    "sluicegate_requests_rejected_total",
    "sluicegate_circuit_state",
    "sluicegate_ledger_healthy",
    "sluicegate_usage_anomalies_total",
    "sluicegate_lease_room_usd",
    "sluicegate_leases_held",
    "sluicegate_budget_authority_up",
)
OTHER = "other"
MAX_FREE_VALUES = 50  # per free-text dimension (team, service, feature) before folding into "other"
_REQUEST_LABELS = ("namespace", "workload", "team", "service", "feature", "model", "provider", "tier")
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


_M = TypeVar("_M", Counter, Gauge, Histogram)


class Children(Generic[_M]):
    """``metric.labels(*values)``, looked up once per distinct values: the per-request counters'
    label values are bounded (``LabelGuard``), and ``labels()`` validates and locks on every call.
    Only for metrics whose children are never removed."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: _M) -> None:
        self._metric: _M = metric
        self._cache: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        return child


@dataclass
class LabelGuard:
    """Keeps label values to what the config declares, or a bounded set of header values."""

    models: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    seen: dict[str, set[str]] = field(default_factory=dict)

    def model(self, value: str | None) -> str:
        return value if value in self.models else ("" if value is None else OTHER)

    def tier(self, value: str | None) -> str:
        return value if value in self.tiers else ("" if value is None else OTHER)

    def free(self, dimension: str, value: str | None) -> str:
        if not value:
            return ""
        values = self.seen.setdefault(dimension, set())
        if value in values:
            return value
        if len(values) >= MAX_FREE_VALUES:
            return OTHER
        values.add(value)
        return value


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sluicegate_requests", "Requests served", (*_REQUEST_LABELS, "status", "verdict"), registry=r
        )
        self.spend = Counter("sluicegate_spend_usd", "Settled spend in USD", _REQUEST_LABELS, registry=r)
        self.tokens = Counter("sluicegate_tokens", "Tokens settled", (*_REQUEST_LABELS, "kind"), registry=r)
        self.duration = Histogram(
            "sluicegate_request_duration_seconds",
            "Request time end to end",
            ("tier",),
            buckets=_SLOW_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "sluicegate_overhead_seconds",
            "Time spent in the sidecar, not upstream",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        # The per-request children, cached (their label values are bounded; never removed).
        self.requests_by = Children(self.requests)
        self.spend_by = Children(self.spend)
        self.tokens_by = Children(self.tokens)
        self.duration_by = Children(self.duration)
        self.fallbacks = Counter("sluicegate_fallbacks", "Fallbacks", ("from", "to", "reason"), registry=r)
        self.budget_limit = Gauge(GAUGE_BUDGET_LIMIT, "Cap", ("policy", "scope", "window"), registry=r)
        self.budget_spent = Gauge(GAUGE_BUDGET_SPENT, "Spent", ("policy", "scope", "window"), registry=r)
        self.budget_remaining = Gauge(
            GAUGE_BUDGET_REMAINING, "Remaining", ("policy", "scope", "window"), registry=r
        )
        self.budget_verdict = Gauge(
            GAUGE_BUDGET_VERDICT,
            "1 for the policy's current verdict",
            ("policy", "scope", "verdict"),
            registry=r,
        )
        self.budget_policy_spent = Gauge(
            GAUGE_BUDGET_POLICY_SPENT,
            "Spent by all of a policy's scopes (every split value) in the window",
            ("policy", "window"),
            registry=r,
        )
        self.budget_scopes = Gauge(
            "sluicegate_budget_scopes",
            "A policy's scopes (split values seen) at each verdict",
            ("policy", "window", "verdict"),
            registry=r,
        )
        self.config_serial = Gauge("sluicegate_config_serial", "Serial of the config in use", registry=r)
        self.config_rejected = Counter(
            "sluicegate_config_rejected", "Configs refused", ("reason",), registry=r
        )
        self.unpriced = Counter(
            "sluicegate_unpriced_requests", "Requests with no price", ("model",), registry=r
        )
        self.rejected = Counter(
            "sluicegate_requests_rejected", "Requests refused before routing", ("reason",), registry=r
        )
        self.circuit = Gauge(
            "sluicegate_circuit_state", "0 closed, 1 half-open, 2 open", ("connection", "model"), registry=r
        )
        self.ledger_healthy = Gauge("sluicegate_ledger_healthy", "1 when the ledger can write", registry=r)
        self.usage_anomalies = Counter(
            "sluicegate_usage_anomalies",
            "Replies whose usage no correct provider reports (charged a bounded figure), "
            "and streams cut past their reserved output",
            ("provider", "reason"),
            registry=r,
        )
        self.ledger_healthy.set(1)
        # Fleet mode (--budget-authority) only; per policy and window, never per split value.
        self.lease_room = Gauge(
            "sluicegate_lease_room_usd",
            "What this sidecar's leases still cover, summed over a policy's scopes",
            ("policy", "window"),
            registry=r,
        )
        self.leases_held = Gauge(
            "sluicegate_leases_held", "Leases held (open, or waiting for their last report)", registry=r
        )
        self.authority_up = Gauge(
            "sluicegate_budget_authority_up", "1 when the last lease sync reached the authority", registry=r
        )


def exported_names(metrics: Metrics) -> Iterable[str]:
    """Every metric family name this registry exposes (for tests and the chart's rules)."""
    return (family.name for family in metrics.registry.collect())
