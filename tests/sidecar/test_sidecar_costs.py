"""What the sidecar charges equals genai-prices' price for the usage the provider reported, for each
provider: via ``X-Sluicegate-Cost-USD`` when not streaming, via the ledger line when streaming."""

from __future__ import annotations

from decimal import Decimal

import pytest
from openai import OpenAI

from tests.sidecar.conftest import CLAUDE, GEMINI
from tests.support.fakes import FakeUsage
from tests.support.sidecar_harness import genai_micro_usd, ledger_entries, wait_until

CASES = [
    ("openai/gpt-4o-mini", "gpt-4o-mini", "openai", "openai_up", FakeUsage(12_000, 900, cached_tokens=4_000)),
    (f"anthropic/{CLAUDE}", CLAUDE, "anthropic", "anthropic_up", FakeUsage(8_000, 700, cached_tokens=3_000, cache_write_tokens=1_000)),
    (f"gemini/{GEMINI}", GEMINI, "google", "gemini_up", FakeUsage(20_000, 1_500, cached_tokens=5_000)),
]  # fmt: skip
IDS = ["openai", "anthropic", "gemini"]


@pytest.mark.parametrize(("requested", "model", "catalog_provider", "fake", "usage"), CASES, ids=IDS)
def test_an_unstreamed_reply_costs_the_catalog_price_of_its_usage(
    gateway, request, requested, model, catalog_provider, fake, usage
) -> None:
    request.getfixturevalue(fake).usage = usage
    client = gateway.keep(OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0))
    raw = client.chat.completions.with_raw_response.create(
        model=requested, messages=[{"role": "user", "content": "x"}]
    )
    assert raw.parse().usage.prompt_tokens == usage.input_tokens
    charged = Decimal(raw.headers["x-sluicegate-cost-usd"]) * 1_000_000
    assert charged == pytest.approx(genai_micro_usd(usage, model, catalog_provider), abs=1)


@pytest.mark.parametrize(("requested", "model", "catalog_provider", "fake", "usage"), CASES, ids=IDS)
def test_a_streamed_reply_costs_the_catalog_price_of_its_usage(
    gateway, request, requested, model, catalog_provider, fake, usage
) -> None:
    request.getfixturevalue(fake).usage = usage
    client = gateway.keep(OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0))
    raw = client.chat.completions.with_raw_response.create(
        model=requested, messages=[{"role": "user", "content": "x"}], stream=True
    )
    assert list(raw.parse())
    request_id = raw.headers["x-request-id"]
    entry = wait_until(
        lambda: next((e for e in ledger_entries(gateway) if e["requestId"] == request_id), None)
    )
    assert entry["costBasis"] == "exact" and entry["status"] == 200
    assert entry["usage"]["input"] == usage.input_tokens and entry["usage"]["cached"] == usage.cached_tokens
    assert entry["costMicroUSD"] == pytest.approx(genai_micro_usd(usage, model, catalog_provider), abs=1)
