"""BudgetPolicy spend status from sidecar metrics: pure aggregation and alert bookkeeping."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluicegate_operator.budgetgauges import MetricsError, parse_budget_metrics
from sluicegate_operator.spendstatus import (
    ALERTS_ANNOTATION,
    SidecarMetrics,
    alert_memory,
    alert_payload,
    spend_status,
    window_bounds,
)
from tests.support.crdvalidate import load_crds, validate
from tests.support.spend_metrics import Scope, budget_exposition

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
CRDS = Path(__file__).resolve().parents[2] / "crds"


def sidecar(pod: str, *scopes: Scope, **labels: str) -> SidecarMetrics:
    return SidecarMetrics(
        pod, {"sluicegate.io/inject": "true", **labels}, parse_budget_metrics(budget_exposition(*scopes))
    )


def policy(name: str = "monthly", **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "sluicegate.io/v1alpha1",
        "kind": "BudgetPolicy",
        "metadata": {"name": name, "namespace": "team-a", "generation": 3, "annotations": {}},
        "spec": {"limits": [{"window": "month", "amountUSD": 100}], "action": "BLOCK", **spec},
    }


def applied(obj: dict[str, object], result) -> dict[str, object]:
    """The policy as the apiserver holds it after the operator's status and annotation patches."""
    updated = copy.deepcopy(obj)
    merged = {**(updated.get("status") or {}), **result.fields}  # a merge patch: None removes
    updated["status"] = {k: v for k, v in merged.items() if v is not None}
    if result.alerts:
        updated["metadata"]["annotations"].update(result.memory_patch()["metadata"]["annotations"])
    return updated


def test_budget_gauges_are_read_from_a_real_sidecar_exposition():
    text = budget_exposition(
        ("monthly", "all", "month", 100, 12.345678, 87.654322, "allow"),
        ("per-customer", 'acme "eu"\\x', "day", 5, 5, 0, "BLOCK"),
    )
    budgets = parse_budget_metrics(text)
    assert budgets.readings[("monthly", "all", "month")].spent == 12_345_678
    assert budgets.readings[("monthly", "all", "month")].limit == 100_000_000
    assert budgets.readings[("per-customer", 'acme "eu"\\x', "day")].remaining == 0
    assert budgets.verdicts == {("monthly", "all"): "allow", ("per-customer", 'acme "eu"\\x'): "BLOCK"}


def test_a_garbled_budget_sample_makes_the_sidecar_unreadable_but_other_families_are_ignored():
    assert parse_budget_metrics("some_other_metric{oops 1\nsluicegate_budget_spent_usd 2\n").readings == {}
    with pytest.raises(MetricsError, match="line 1"):
        parse_budget_metrics('sluicegate_budget_spent_usd{policy="p" 1\n')
    with pytest.raises(MetricsError):
        parse_budget_metrics('sluicegate_budget_limit_usd{policy="p",scope="all",window="day"} NaN\n')


def test_spend_of_two_sidecars_is_summed_against_the_per_sidecar_cap():
    result = spend_status(
        policy(),
        [
            sidecar("a", ("monthly", "all", "month", 100, 30.25, 69.75, "allow")),
            sidecar("b", ("monthly", "all", "month", 100, 20, 80, "allow")),
        ],
        now=NOW,
    )
    assert result is not None
    assert result.fields["windows"] == [
        {
            "window": "month",
            "spentUSD": 50.25,
            "reservedUSD": 0,
            "remainingUSD": 49.75,
            "limitUSD": 100,
            "verdict": "ALLOW",
            "windowStart": "2026-11-01T00:00:00Z",
            "windowEnd": "2026-12-01T00:00:00Z",
        }
    ]
    assert result.fields["verdict"] == "ALLOW"
    assert result.fields["lastAlertThreshold"] == 0.5
    [alert] = result.alerts
    assert (alert.window, alert.threshold, alert.spent_usd, alert.limit_usd) == ("month", 0.5, 50.25, 100)
    assert alert.message == (
        "BudgetPolicy team-a/monthly: 50% of the monthly limit reached: $50.25 spent of $100 "
        "since 2026-11-01T00:00:00Z (summed over the sidecars)"
    )
    condition = next(c for c in result.fields["conditions"] if c["type"] == "SpendReported")
    assert (condition["status"], condition["reason"], condition["observedGeneration"]) == (
        "True",
        "Reported",
        3,
    )


def test_the_status_the_operator_writes_validates_against_the_crd():
    obj = policy(alerts={"thresholds": [0.25, 0.5]})
    obj["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Sealed", "message": ""}]}
    result = spend_status(obj, [sidecar("a", ("monthly", "all", "month", 100, 1e-06, 90, "allow"))], now=NOW)
    updated = applied(obj, result)
    assert validate(updated, load_crds(CRDS)) == []
    assert updated["status"]["windows"][0]["spentUSD"] == 0.000001
    assert updated["status"]["windows"][0]["reservedUSD"] == 9.999999
    assert [c["type"] for c in updated["status"]["conditions"]] == ["Ready", "SpendReported"]


def test_split_scopes_add_up_in_spent_but_alerts_follow_the_most_spent_scope():
    obj = policy(
        "per-customer",
        splitBy="endCustomer",
        limits=[{"window": "day", "amountUSD": 5, "timezone": "America/New_York"}],
    )
    result = spend_status(
        obj,
        [
            sidecar(
                "a",
                ("per-customer", "acme", "day", 5, 2, 3, "allow"),
                ("per-customer", "initech", "day", 5, 2, 3, "allow"),
            ),
            sidecar(
                "b",
                ("per-customer", "acme", "day", 5, 1, 4, "allow"),
                ("per-customer", "initech", "day", 5, 0.5, 4.5, "allow"),
            ),
        ],
        now=NOW,
    )
    window = result.fields["windows"][0]
    assert (window["spentUSD"], window["limitUSD"], window["remainingUSD"]) == (5.5, 5, 2)
    assert (window["windowStart"], window["windowEnd"]) == ("2026-11-20T05:00:00Z", "2026-11-21T05:00:00Z")
    [alert] = (
        result.alerts
    )  # acme: $3 of $5 across both sidecars; the $5.50 total crosses nothing per customer
    assert (alert.threshold, alert.scope, alert.spent_usd) == (0.5, "acme", 3)
    assert "for acme" in alert.message


def test_a_split_policy_reads_its_total_from_the_policy_gauge_and_alerts_on_its_most_spent_value():
    obj = policy("per-customer", splitBy="endCustomer", limits=[{"window": "day", "amountUSD": 5}])

    def split_sidecar(pod: str, top_spent: float, total: float) -> SidecarMetrics:
        top = ("per-customer", "max", "day", 5, top_spent, 5 - top_spent, "allow")
        exposition = budget_exposition(top, totals={("per-customer", "day"): total})
        return SidecarMetrics(pod, {"sluicegate.io/inject": "true"}, parse_budget_metrics(exposition))

    result = spend_status(obj, [split_sidecar("a", 2, 40), split_sidecar("b", 1, 12.5)], now=NOW)
    window = result.fields["windows"][0]
    assert window["spentUSD"] == 52.5  # every customer's spend, though only the top one is a series
    [alert] = result.alerts
    assert (alert.threshold, alert.scope, alert.spent_usd) == (0.5, "max", 3)
    assert "for its most-spent split value" in alert.message


def test_each_threshold_alerts_once_per_window_and_a_new_window_starts_over():
    obj = policy(alerts={"thresholds": [0.5, 0.8, 1.0]})

    def at(spent: float, now: datetime = NOW):
        nonlocal obj
        result = spend_status(
            obj, [sidecar("a", ("monthly", "all", "month", 100, spent, 100 - spent, "allow"))], now=now
        )
        obj = applied(obj, result)
        return [a.threshold for a in result.alerts], result.fields["lastAlertThreshold"]

    assert at(10) == ([], None)
    assert at(55) == ([0.5], 0.5)
    assert at(60) == ([], 0.5)
    assert at(40) == ([], 0.5)  # a sidecar went away: the spend shown drops, the alert is not re-armed
    assert at(59) == ([], 0.5)
    assert at(100) == ([1.0], 1.0)  # straight past 0.8: one alert, for the highest threshold crossed
    assert at(100) == ([], 1.0)
    december = datetime(2026, 12, 2, tzinfo=UTC)
    assert at(0, december) == ([], None)
    assert at(51, december) == ([0.5], 0.5)
    assert alert_memory(obj) == {"month": {"windowStart": "2026-12-01T00:00:00Z", "threshold": 0.5}}


def test_windows_keep_their_own_alert_memory():
    obj = policy(limits=[{"window": "day", "amountUSD": 10}, {"window": "month", "amountUSD": 100}])
    scopes = [("monthly", "all", "day", 10, 6, 4, "allow"), ("monthly", "all", "month", 100, 6, 94, "allow")]
    first = spend_status(obj, [sidecar("a", *scopes)], now=NOW)
    assert [(a.window, a.threshold) for a in first.alerts] == [("day", 0.5)]
    obj = applied(obj, first)
    scopes = [("monthly", "all", "day", 10, 9, 1, "allow"), ("monthly", "all", "month", 100, 55, 45, "allow")]
    second = spend_status(obj, [sidecar("a", *scopes)], now=NOW)
    assert [(a.window, a.threshold) for a in second.alerts] == [("day", 0.8), ("month", 0.5)]
    assert second.fields["lastAlertThreshold"] == 0.8


def test_the_verdict_is_the_strictest_any_sidecar_is_under():
    obj = policy(
        action="DOWNGRADE",
        downgradeTo="light",
        ladder=[{"at": 0.8, "action": "DOWNGRADE"}, {"at": 0.95, "action": "BLOCK"}],
    )
    result = spend_status(
        obj,
        [
            sidecar("a", ("monthly", "all", "month", 100, 10, 85, "allow")),
            sidecar("b", ("monthly", "all", "month", 100, 81, 14, "DOWNGRADE")),
        ],
        now=NOW,
    )
    assert result.fields["verdict"] == "DOWNGRADE"
    assert result.fields["windows"][0]["verdict"] == "DOWNGRADE"
    assert result.fields["windows"][0]["remainingUSD"] == 4  # $91 spent in all; the sidecars BLOCK at $95
    blocked = spend_status(obj, [sidecar("b", ("monthly", "all", "month", 100, 95, 0, "BLOCK"))], now=NOW)
    assert blocked.fields["verdict"] == blocked.fields["windows"][0]["verdict"] == "BLOCK"
    killed = spend_status(policy(killSwitch=True), [], now=NOW)
    assert killed.fields["verdict"] == "KILL_SWITCH"


def test_unreachable_sidecars_are_counted_and_when_none_answers_the_last_spend_stays():
    obj = policy(selector={"matchLabels": {"app": "chat"}})
    ok = sidecar("chat-1", ("monthly", "all", "month", 100, 7, 93, "allow"), app="chat")
    down = SidecarMetrics("chat-2", {"app": "chat"}, None, "timed out")
    other = sidecar("batch-1", ("monthly", "all", "month", 100, 50, 50, "allow"), app="batch")
    partial = spend_status(obj, [ok, down, other], now=NOW)
    assert partial.fields["windows"][0]["spentUSD"] == 7  # batch-1 is not selected by the policy
    condition = partial.fields["conditions"][-1]
    assert (condition["status"], condition["reason"]) == ("True", "PartiallyReported")
    assert condition["message"] == "1 of 2 sidecars reported; 1 did not: chat-2 (timed out)"

    obj = applied(obj, partial)
    silent = spend_status(obj, [down, other], now=NOW)
    assert set(silent.fields) == {"conditions"}
    assert silent.fields["conditions"][-1]["status"] == "False"
    assert applied(obj, silent)["status"]["windows"] == obj["status"]["windows"]


def test_no_sidecars_means_no_spend_and_an_unchanged_report_needs_no_patch():
    obj = policy()
    result = spend_status(obj, [], now=NOW)
    assert result.fields["windows"][0]["spentUSD"] == 0
    assert result.fields["windows"][0]["remainingUSD"] == 100
    assert result.fields["conditions"][0]["reason"] == "NoSidecars"
    later = spend_status(applied(obj, result), [], now=datetime(2026, 11, 20, 16, tzinfo=UTC))
    assert not later.differs_from(applied(obj, result)["status"])


def test_an_unreadable_spec_or_alert_annotation_is_survived():
    assert (
        spend_status(
            {"kind": "BudgetPolicy", "metadata": {"name": "x"}, "spec": {"limits": "no"}}, [], now=NOW
        )
        is None
    )
    obj = policy()
    obj["metadata"]["annotations"][ALERTS_ANNOTATION] = "{not json"
    assert alert_memory(obj) == {}


def test_window_bounds_follow_the_policy_timezone_across_a_dst_change():
    start, end = window_bounds("day", "Europe/Berlin", datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    start, _ = window_bounds("week", "UTC", NOW)
    assert start == datetime(2026, 11, 16, tzinfo=UTC)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        window_bounds("day", "Mars/Olympus", NOW)


def test_webhook_payloads_are_slack_text_or_generic_json():
    result = spend_status(
        policy(), [sidecar("a", ("monthly", "all", "month", 100, 80, 20, "allow"))], now=NOW
    )
    [alert] = result.alerts
    assert alert_payload(alert, "slack") == {"text": f":warning: {alert.message}"}
    generic = alert_payload(alert, "generic")
    assert generic["kind"] == "BudgetThresholdCrossed"
    assert (generic["policy"], generic["threshold"], generic["spentUSD"], generic["limitUSD"]) == (
        "monthly",
        0.8,
        80,
        100,
    )
    assert generic["windowStart"] == "2026-11-01T00:00:00Z"
