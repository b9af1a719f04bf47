"""fault 25 (issue 13 item 9): a BudgetPolicy split by endCustomer with 10,000 values seen keeps
/metrics small — the budget gauges are per policy and window (the most-used scope, the policy's total,
the count of scopes at each verdict), never a series per customer — and a scrape never stalls the API.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluicegate_sidecar.attribution import attribute
from sluicegate_sidecar.budget import Reservation
from sluicegate_sidecar.runtime import Gateway
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    metric_value,
    priced,
    render_dir,
    tier,
)

CUSTOMERS = 10_000
CAP_USD = 1.0
SPEND_EACH = 100  # micro-USD settled per customer added through the budget book


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        [
            connection("mock", "mock", [priced("mock-small", 0.1, 0.4)], mock={"latencyMs": 0}),
            tier("light", 0, [("mock", "mock-small")]),
            budget("per-customer", CAP_USD, splitBy="endCustomer"),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger", access_log=False) as sc:
        yield sc


def ask(sc: SidecarThread, customer: str, client: httpx.Client | None = None) -> httpx.Response:
    body = {"model": "tier:light", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    headers = {"X-Sluicegate-End-Customer": customer}
    return (client or httpx).post(f"{sc.base_url}/chat/completions", json=body, headers=headers, timeout=10)


async def spend_for_customers(gateway: Gateway, first: int, count: int, micro_usd: int) -> None:
    """What ``count`` served requests of distinct customers leave in the budget book (one reservation
    settled each), done on the sidecar's loop: 10,000 real requests would take minutes here."""
    now = datetime.now(UTC)
    for i in range(first, first + count):
        who = attribute(gateway.pod, {"x-sluicegate-end-customer": f"customer-{i:05d}"})
        reservation = gateway.budgets.reserve(who, micro_usd, now)
        assert isinstance(reservation, Reservation)
        gateway.budgets.settle(reservation, micro_usd)


def series(text: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (sample.name, dict(sample.labels))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def test_ten_thousand_split_values_keep_metrics_small_and_count_the_scopes_at_each_verdict(
    sidecar: SidecarThread,
) -> None:
    for i in range(20):  # real requests: each customer gets its own scope
        assert ask(sidecar, f"customer-{i:05d}").status_code == 200
    assert sidecar.gateway is not None
    sidecar.run_sync(spend_for_customers(sidecar.gateway, 20, CUSTOMERS - 21, SPEND_EACH))
    sidecar.run_sync(spend_for_customers(sidecar.gateway, CUSTOMERS - 1, 1, int(CAP_USD * 1_000_000)))
    assert ask(sidecar, f"customer-{CUSTOMERS - 1:05d}").status_code == 402  # that one is at its cap

    response = httpx.get(f"{sidecar.ops_url}/metrics", timeout=10)
    samples = series(response.text)
    assert len(samples) < 400, len(samples)
    assert len(response.content) < 100_000
    assert not [labels for _, labels in samples if any("customer-" in v for v in labels.values())]

    scopes = {
        labels["verdict"]: value
        for labels, value in _samples(response.text, "sluicegate_budget_scopes")
        if labels["policy"] == "per-customer"
    }
    assert scopes == {"allow": CUSTOMERS - 1, "BLOCK": 1}
    top = {"policy": "per-customer", "scope": "max", "window": "day"}
    assert metric_value(sidecar, "sluicegate_budget_spent_usd", **top) == CAP_USD  # the most-spent customer
    assert metric_value(sidecar, "sluicegate_budget_limit_usd", **top) == CAP_USD
    assert metric_value(sidecar, "sluicegate_budget_remaining_usd", **top) == 0
    assert (
        metric_value(
            sidecar, "sluicegate_budget_verdict", policy="per-customer", scope="max", verdict="BLOCK"
        )
        == 1
    )
    total = metric_value(sidecar, "sluicegate_budget_policy_spent_usd", policy="per-customer", window="day")
    served = (CUSTOMERS - 21) * SPEND_EACH + int(CAP_USD * 1_000_000)
    assert served / 1e6 < total < served / 1e6 + 0.01  # plus what the 20 real requests cost


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_scrapes_with_ten_thousand_split_values_do_not_stall_api_requests(sidecar: SidecarThread) -> None:
    assert sidecar.gateway is not None
    sidecar.run_sync(spend_for_customers(sidecar.gateway, 0, CUSTOMERS, SPEND_EACH))
    stop = threading.Event()
    scrape_seconds: list[float] = []

    def scrape() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.get(f"{sidecar.ops_url}/metrics").status_code == 200
                scrape_seconds.append(time.perf_counter() - started)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    latencies: list[float] = []
    try:
        with httpx.Client(timeout=30) as client:
            for i in range(60):
                started = time.perf_counter()
                assert ask(sidecar, f"customer-{i:05d}", client).status_code == 200
                latencies.append(time.perf_counter() - started)
    finally:
        stop.set()
        scraper.join(timeout=30)
    assert len(scrape_seconds) >= 3
    # A stall, not a speed: a scrape walking every split scope took 6.2 s and held API requests for as
    # long; now each takes milliseconds. The bound leaves room for a loaded CI machine (a 0.5 s bound
    # failed once there at 0.58 s); how fast is for the benchmark to say.
    assert max(scrape_seconds) < 2.0, max(scrape_seconds)
    assert max(latencies) < 2.0, max(latencies)
