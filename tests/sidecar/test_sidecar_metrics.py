"""The sidecar's Prometheus metrics, asserted by value per label set after known traffic (README, Metrics)."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from tests.sidecar.conftest import CLAUDE, GEMINI
from tests.support.fakes import FakeUsage, Fault
from tests.support.sidecar_harness import genai_micro_usd, metric_samples, metric_value, wait_until

POD = {"namespace": "default", "workload": "checkout"}
NO_DIMENSIONS = {"team": "", "service": "", "feature": ""}


def labels(model: str, provider: str, tier: str = "", **dims: str) -> dict[str, str]:
    return {**POD, **NO_DIMENSIONS, **dims, "model": model, "provider": provider, "tier": tier}


def exactly(sidecar, name: str, wanted: dict[str, str]) -> float:
    """The value of the one sample whose label set is exactly ``wanted`` (0 when absent)."""
    found = [value for sample_labels, value in metric_samples(sidecar, name) if sample_labels == wanted]
    assert len(found) <= 1
    return found[0] if found else 0.0


def test_requests_spend_and_tokens_are_counted_per_label_set(
    gateway, openai_up, anthropic_up, gemini_up
) -> None:
    client = OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    payments = {"X-Sluicegate-Team": "payments", "X-Sluicegate-Feature": "checkout-summary"}
    openai_up.usage = FakeUsage(1000, 100, cached_tokens=400)
    for _ in range(2):
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}], extra_headers=payments
        )
    anthropic_up.usage = FakeUsage(500, 50)
    stream = client.chat.completions.create(
        model=f"anthropic/{CLAUDE}", messages=[{"role": "user", "content": "x"}], stream=True,
        extra_headers={"X-Sluicegate-Team": "search"},
    )  # fmt: skip
    assert list(stream)
    gemini_up.usage = FakeUsage(300, 30)
    client.chat.completions.create(model="tier:standard", messages=[{"role": "user", "content": "x"}])
    openai_up.script([Fault.status(400, message="bad request")])  # the request's own fault, passed through
    failed = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert failed.status_code == 400
    unknown = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert unknown.status_code == 404

    openai_labels = labels("openai/gpt-4o-mini", "openai", team="payments", feature="checkout-summary")
    claude_labels = labels(f"anthropic/{CLAUDE}", "anthropic", team="search")
    standard_labels = labels(f"gemini/{GEMINI}", "gemini", "standard")  # the tier's cheapest candidate
    wait_until(
        lambda: exactly(
            gateway, "sluicegate_requests_total", claude_labels | {"status": "200", "verdict": "allow"}
        )
    )

    requests = "sluicegate_requests_total"
    assert exactly(gateway, requests, openai_labels | {"status": "200", "verdict": "allow"}) == 2
    assert exactly(gateway, requests, claude_labels | {"status": "200", "verdict": "allow"}) == 1
    assert exactly(gateway, requests, standard_labels | {"status": "200", "verdict": "allow"}) == 1
    no_dims = labels("openai/gpt-4o-mini", "openai")
    unserved = labels("", "")  # no upstream served it: no model, no provider
    assert exactly(gateway, requests, unserved | {"status": "400", "verdict": "allow"}) == 1
    assert exactly(gateway, requests, unserved | {"status": "404", "verdict": "allow"}) == 1
    assert metric_value(gateway, requests) == 6

    openai_cost = genai_micro_usd(FakeUsage(1000, 100, cached_tokens=400), "gpt-4o-mini", "openai")
    claude_cost = genai_micro_usd(FakeUsage(500, 50), CLAUDE, "anthropic")
    spend = "sluicegate_spend_usd_total"
    assert exactly(gateway, spend, openai_labels) == pytest.approx(2 * openai_cost / 1e6, abs=2e-6)
    assert exactly(gateway, spend, claude_labels) == pytest.approx(claude_cost / 1e6, abs=1e-6)
    gemini_cost = genai_micro_usd(FakeUsage(300, 30), GEMINI, "google")
    assert exactly(gateway, spend, standard_labels) == pytest.approx(gemini_cost / 1e6, abs=1e-6)
    assert exactly(gateway, spend, no_dims) == 0  # the upstream refused it: nothing billed

    tokens = "sluicegate_tokens_total"
    assert exactly(gateway, tokens, openai_labels | {"kind": "input"}) == 2000
    assert exactly(gateway, tokens, openai_labels | {"kind": "output"}) == 200
    assert exactly(gateway, tokens, openai_labels | {"kind": "cached"}) == 800
    assert exactly(gateway, tokens, claude_labels | {"kind": "input"}) == 500
    assert exactly(gateway, tokens, claude_labels | {"kind": "output"}) == 50
    assert exactly(gateway, tokens, claude_labels | {"kind": "cached"}) == 0

    assert metric_value(gateway, "sluicegate_request_duration_seconds_count") == 6
    assert metric_value(gateway, "sluicegate_overhead_seconds_count") == 6
    assert metric_value(gateway, "sluicegate_config_serial") == 1
    assert metric_value(gateway, "sluicegate_ledger_healthy") == 1


def test_gemini_spend_is_counted_at_the_catalog_price(gateway, gemini_up) -> None:
    gemini_up.usage = FakeUsage(4000, 200)
    client = OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}])
    gemini_labels = labels(f"gemini/{GEMINI}", "gemini")
    cost = genai_micro_usd(FakeUsage(4000, 200), GEMINI, "google")
    assert exactly(gateway, "sluicegate_spend_usd_total", gemini_labels) == pytest.approx(
        3 * cost / 1e6, abs=3e-6
    )
    assert exactly(gateway, "sluicegate_tokens_total", gemini_labels | {"kind": "input"}) == 12000
    assert (
        exactly(gateway, "sluicegate_requests_total", gemini_labels | {"status": "200", "verdict": "allow"})
        == 3
    )


def test_user_supplied_label_values_are_bounded(gateway, openai_up) -> None:
    with httpx.Client(base_url=gateway.base_url) as http:
        for i in range(52):
            http.post(
                "/chat/completions",
                json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                headers={"X-Sluicegate-Team": f"team-{i}", "X-Sluicegate-User": f"user-{i}"},
            )
    samples = metric_samples(gateway, "sluicegate_requests_total")
    teams = {found["team"] for found, _ in samples}
    assert len(teams) == 51 and "other" in teams
    assert all("user" not in found for found, _ in samples)
    assert sum(value for found, value in samples if found["team"] == "other") == 2
