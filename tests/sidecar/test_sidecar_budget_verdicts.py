"""Budget verdicts through the real sidecar: BLOCK, kill switch, DOWNGRADE, LIGHT_ONLY, Shadow, the
ladder, pinned models, unpriced models, the remaining-budget header and per-customer caps.

Prices are overrides and the fake reports exactly the reserved (bounded) prompt and the asked output, so
every request costs a known amount: light 200, standard 700, premium 2,800 micro-USD.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fakes import FakeOpenAI, FakeUsage
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    priced,
    render_dir,
    reserved_prompt_of,
    tier,
)

PROMPT_TOKENS, OUTPUT_TOKENS = 100, 20
COST = {"light": 200, "standard": 700, "premium": 2_800}  # micro-USD per request
MODEL = {"light": "m-light", "standard": "m-std", "premium": "m-prem"}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(usage=FakeUsage(PROMPT_TOKENS, OUTPUT_TOKENS)) as server:
        yield server


@pytest.fixture
def gateway_with(fake: FakeOpenAI, tmp_path: Path) -> Iterator[Callable[..., SidecarThread]]:
    """Start a sidecar whose config is the three tiers plus the given BudgetPolicies."""
    with ExitStack() as stack:

        def start(*policies: dict[str, Any], models: list[Any] | None = None) -> SidecarThread:
            shelf = [priced("m-light", 1, 5), priced("m-std", 5, 10), priced("m-prem", 20, 40)]
            config = render_dir(
                tmp_path / "config",
                [
                    connection("openai", "openai", shelf + (models or []), base_url=fake.base_url),
                    tier("light", 0, [("openai", "m-light")]),
                    tier("standard", 10, [("openai", "m-std")]),
                    tier("premium", 20, [("openai", "m-prem")]),
                    *policies,
                ],
            )
            return stack.enter_context(SidecarThread(config, tmp_path / "ledger", access_log=False))

        yield start


def ask(sc: SidecarThread, model: str = "tier:premium", **headers: str) -> httpx.Response:
    body = {"model": model, "messages": reserved_prompt_of(PROMPT_TOKENS), "max_tokens": OUTPUT_TOKENS}
    return httpx.post(f"{sc.base_url}/chat/completions", json=body, headers=headers, timeout=10)


def spend(sc: SidecarThread, times: int, model: str = "tier:premium") -> None:
    for _ in range(times):
        assert ask(sc, model).status_code == 200


def error_of(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def test_block_refuses_with_402_budget_exceeded_naming_the_policy(gateway_with, fake) -> None:
    sc = gateway_with(budget("team-cap", 2 * COST["premium"] / 1e6, action="BLOCK"))
    spend(sc, 2)
    refused = ask(sc)
    assert refused.status_code == 402
    error = error_of(refused)
    assert (error["type"], error["code"]) == ("budget_exceeded", "budget_exceeded")
    assert "team-cap" in error["message"]
    assert refused.headers["x-sluicegate-verdict"] == "BLOCK"
    assert refused.headers["x-sluicegate-budget-remaining-usd"] == "0.000000"
    assert len(fake.requests) == 2  # the refused request never reached the provider


def test_kill_switch_refuses_every_paid_request_with_403(gateway_with, fake) -> None:
    sc = gateway_with(budget("frozen", 10, killSwitch=True))
    refused = ask(sc)
    assert refused.status_code == 403
    assert (error_of(refused)["type"], error_of(refused)["code"]) == ("kill_switch", "kill_switch")
    assert "frozen" in error_of(refused)["message"]
    assert refused.headers["x-sluicegate-verdict"] == "KILL"
    assert fake.requests == []


def test_downgrade_step_serves_a_premium_request_from_the_downgrade_tier(gateway_with, fake) -> None:
    policy = budget("spend-down", 0.01, ladder=[{"at": 0.5, "action": "DOWNGRADE"}], downgradeTo="standard")
    sc = gateway_with(policy)
    spend(sc, 2)  # 5,600 of 10,000: past the 0.5 step
    served = ask(sc)
    assert served.status_code == 200
    assert served.headers["x-sluicegate-verdict"] == "DOWNGRADE"
    assert served.headers["x-sluicegate-tier"] == "standard"
    assert served.headers["x-sluicegate-routed-model"] == "openai/m-std"
    assert fake.requests[-1].json["model"] == "m-std"


def test_downgrade_action_reroutes_a_request_that_no_longer_fits_to_the_cheaper_tier(
    gateway_with, fake
) -> None:
    cap = 2 * COST["premium"] + COST["standard"]
    sc = gateway_with(budget("spend-down", cap / 1e6, action="DOWNGRADE", downgradeTo="standard"))
    spend(sc, 2)  # 700 left: not enough for premium, just enough for standard
    served = ask(sc)
    assert served.status_code == 200
    assert (served.headers["x-sluicegate-tier"], served.headers["x-sluicegate-verdict"]) == (
        "standard",
        "DOWNGRADE",
    )
    assert Decimal(served.headers["x-sluicegate-budget-remaining-usd"]) == 0
    assert [r.json["model"] for r in fake.requests] == ["m-prem", "m-prem", "m-std"]
    refused = ask(sc)  # nothing left at all: the downgrade has no room either
    assert refused.status_code == 402 and error_of(refused)["code"] == "budget_exceeded"


def test_light_only_step_serves_from_the_lightest_tier(gateway_with, fake) -> None:
    sc = gateway_with(budget("tight", 0.01, ladder=[{"at": 0.5, "action": "LIGHT_ONLY"}]))
    spend(sc, 2)
    served = ask(sc, "tier:standard")
    assert served.status_code == 200
    assert (served.headers["x-sluicegate-tier"], served.headers["x-sluicegate-verdict"]) == (
        "light",
        "LIGHT_ONLY",
    )
    assert fake.requests[-1].json["model"] == "m-light"


def test_shadow_mode_serves_normally_and_records_what_would_have_happened(gateway_with, fake) -> None:
    sc = gateway_with(budget("dry-run", (COST["premium"] + 200) / 1e6, mode="Shadow"))
    responses = [ask(sc) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    verdicts = [r.headers["x-sluicegate-verdict"] for r in responses]
    # the second would not have fitted (refused at reservation), the third comes after the cap
    assert verdicts == ["allow", "allow; shadow=BLOCK", "allow; shadow=BLOCK"]
    assert all("x-sluicegate-budget-remaining-usd" not in r.headers for r in responses)
    sc.run_sync(sc.gateway.ledger.flush())
    entries = ledger_lines(sc.ledger_dir)
    assert [e["verdict"] for e in entries] == verdicts
    assert all(e["budgetScopes"] == ["dry-run"] for e in entries)
    assert sum(e["costMicroUSD"] for e in entries) == 3 * COST["premium"]


def test_the_ledger_records_the_verdict_and_the_resolution_structured(gateway_with, fake) -> None:
    sc = gateway_with(budget("dry-run", (COST["premium"] + 200) / 1e6, mode="Shadow"))
    assert [ask(sc).status_code for _ in range(2)] == [200, 200]
    sc.run_sync(sc.gateway.ledger.flush())
    entries = ledger_lines(sc.ledger_dir)
    assert [e["v"] for e in entries] == [2, 2]
    assert [e["decision"] for e in entries] == [
        {"action": "allow", "shadow": None, "policy": None},
        {"action": "allow", "shadow": "BLOCK", "policy": None},
    ]
    assert entries[0]["resolution"] == {"kind": "tier", "tier": entries[0]["tier"], "reason": None}


def test_the_ladder_steps_down_as_spend_grows_and_blocks_at_the_cap(gateway_with, fake) -> None:
    ladder = [
        {"at": 0.8, "action": "DOWNGRADE"},
        {"at": 0.95, "action": "LIGHT_ONLY"},
        {"at": 1.0, "action": "BLOCK"},
    ]
    sc = gateway_with(budget("ladder", 0.01, action="BLOCK", downgradeTo="standard", ladder=ladder))
    seen = []
    for _ in range(7):
        r = ask(sc)
        seen.append((r.status_code, r.headers.get("x-sluicegate-tier"), r.headers["x-sluicegate-verdict"]))
    assert seen == [
        (200, "premium", "allow"),  # 2,800
        (200, "premium", "allow"),  # 5,600
        (200, "premium", "allow"),  # 8,400: past 0.8
        (200, "standard", "DOWNGRADE"),  # 9,100
        (200, "standard", "DOWNGRADE"),  # 9,800: past 0.95
        (200, "light", "LIGHT_ONLY"),  # 10,000: at 1.0
        (402, "premium", "BLOCK"),
    ]
    metrics = httpx.get(f"{sc.ops_url}/metrics").text
    assert 'sluicegate_budget_verdict{policy="ladder",scope="all",verdict="BLOCK"} 1.0' in metrics
    assert 'sluicegate_budget_spent_usd{policy="ladder",scope="all",window="day"} 0.01' in metrics


def test_a_pinned_model_is_refused_rather_than_switched_under_downgrade(gateway_with, fake) -> None:
    sc = gateway_with(
        budget("spend-down", 0.01, ladder=[{"at": 0.5, "action": "DOWNGRADE"}], downgradeTo="standard")
    )
    spend(sc, 2)
    refused = ask(sc, "openai/m-prem")
    assert refused.status_code == 402
    assert error_of(refused)["code"] == "budget_exceeded" and "spend-down" in error_of(refused)["message"]
    assert refused.headers["x-sluicegate-verdict"] == "DOWNGRADE"
    assert len(fake.requests) == 2


def test_an_unpriced_model_under_a_budget_is_refused_with_pricing_unknown(gateway_with, fake) -> None:
    sc = gateway_with(budget("priced-only", 10), models=["house-model"])
    refused = ask(sc, "openai/house-model")
    assert refused.status_code == 402
    assert error_of(refused)["code"] == "pricing_unknown" and "priced-only" in error_of(refused)["message"]
    assert fake.requests == []


def test_an_unpriced_model_is_served_and_counted_when_the_policy_allows_it(gateway_with, fake) -> None:
    sc = gateway_with(budget("lenient", 10, allowUnpriced=True), models=["house-model"])
    assert ask(sc, "openai/house-model").status_code == 200
    sc.run_sync(sc.gateway.ledger.flush())
    [entry] = ledger_lines(sc.ledger_dir)
    assert (entry["model"], entry["costBasis"]) == ("house-model", "unpriced")
    metrics = httpx.get(f"{sc.ops_url}/metrics").text
    assert 'sluicegate_unpriced_requests_total{model="openai/house-model"} 1.0' in metrics


def test_remaining_budget_header_goes_down_by_each_request_cost(gateway_with) -> None:
    sc = gateway_with(budget("daily", 1.0))
    first, second = ask(sc), ask(sc, "tier:standard")
    remaining = [Decimal(r.headers["x-sluicegate-budget-remaining-usd"]) for r in (first, second)]
    costs = [Decimal(r.headers["x-sluicegate-cost-usd"]) for r in (first, second)]
    assert costs == [Decimal("0.002800"), Decimal("0.000700")]
    assert remaining[0] == Decimal("1.0") - costs[0]
    assert remaining[1] == remaining[0] - costs[1]


def test_a_per_customer_cap_blocks_only_that_customer(gateway_with, fake) -> None:
    sc = gateway_with(budget("per-customer", COST["premium"] / 1e6, splitBy="endCustomer"))
    assert ask(sc, **{"X-Sluicegate-End-Customer": "acme"}).status_code == 200
    refused = ask(sc, **{"X-Sluicegate-End-Customer": "acme"})
    assert refused.status_code == 402 and "per-customer" in error_of(refused)["message"]
    other = ask(sc, **{"X-Sluicegate-End-Customer": "globex"})
    assert other.status_code == 200
    assert Decimal(other.headers["x-sluicegate-budget-remaining-usd"]) == 0
    sc.run_sync(sc.gateway.ledger.flush())
    customers = [e["attribution"]["endCustomer"] for e in ledger_lines(sc.ledger_dir)]
    assert customers == ["acme", "globex"]


def test_a_streamed_reply_is_charged_to_the_budget_like_a_plain_one(gateway_with, fake) -> None:
    sc = gateway_with(budget("team-cap", COST["premium"] / 1e6))
    body = {
        "model": "tier:premium",
        "messages": reserved_prompt_of(PROMPT_TOKENS),
        "max_tokens": OUTPUT_TOKENS,
        "stream": True,
    }
    with httpx.stream("POST", f"{sc.base_url}/chat/completions", json=body, timeout=10) as streamed:
        assert streamed.status_code == 200
        text = "".join(streamed.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    refused = ask(sc)
    assert refused.status_code == 402
    sc.run_sync(sc.gateway.ledger.flush())
    [entry] = ledger_lines(sc.ledger_dir)
    assert (entry["costMicroUSD"], entry["costBasis"], entry["status"]) == (COST["premium"], "exact", 200)
    assert json.loads(refused.text)["error"]["type"] == "budget_exceeded"
