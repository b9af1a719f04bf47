"""fault 2 and 4 at the request's limits: ``n`` is capped and multiplies the reservation (the output
cap sent upstream is clamped so that n choices fit what remains), ``max_tokens`` is clamped to the
model's maximum, and a prompt longer than every candidate's context window is a 400 with no spend
and no upstream call (a tier skips the candidates it does not fit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI, FakeUsage, Fault
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_entries,
    metric_value,
    priced,
    prompt_of,
    render_dir,
    reserved_prompt_of,
    tier,
)

CAP_MICRO_USD = 2_000  # $0.002: 1 micro-USD per input token, 4 per output token (priced below)
SMALL_WINDOW = 200


@pytest.fixture
def gateway(tmp_path: Path, openai_up: FakeOpenAI) -> Iterator[Callable[..., SidecarThread]]:
    """A sidecar over two connections to the one fake: ``small`` (gpt-4o-mini, 200-token window;
    gpt-4o with at most 100 output tokens) and ``big`` (gpt-4o, a large window), optionally
    under a $0.002 BLOCK budget."""
    started: list[SidecarThread] = []

    def start(*, capped: bool = False) -> SidecarThread:
        objects: list[Any] = [
            connection(
                "small",
                "openai",
                [
                    priced("gpt-4o-mini", 1.0, 4.0, contextWindow=SMALL_WINDOW),
                    priced("gpt-4o", 1.0, 4.0, maxOutputTokens=100),
                ],
                base_url=openai_up.base_url,
                key=OPENAI_KEY,
            ),
            connection(
                "big",
                "openai",
                [priced("gpt-4o", 2.0, 8.0, contextWindow=100_000)],
                base_url=openai_up.base_url,
                key=OPENAI_KEY,
            ),
            tier("standard", 10, [("small", "gpt-4o-mini"), ("big", "gpt-4o")]),
        ]
        if capped:
            objects.append(budget("cap", CAP_MICRO_USD / 1_000_000, action="BLOCK"))
        config = render_dir(tmp_path / "config", objects)
        sidecar = SidecarThread(config, tmp_path / "ledger", access_log=False).start()
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()


def chat(sidecar: SidecarThread, **body: Any) -> httpx.Response:
    body.setdefault("messages", reserved_prompt_of(50))
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def spent(sidecar: SidecarThread) -> int:
    return sum(entry["costMicroUSD"] for entry in ledger_entries(sidecar))


# -- n ----------------------------------------------------------------------------------------------


def test_n_up_to_16_is_passed_on_and_above_it_is_a_400_before_the_upstream(
    gateway: Callable[..., SidecarThread], openai_up: FakeOpenAI
) -> None:
    sc = gateway()
    refused = chat(sc, model="small/gpt-4o-mini", n=17)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "n"
    assert openai_up.requests == []
    assert chat(sc, model="small/gpt-4o-mini", n=16).status_code == 200
    assert openai_up.requests[-1].json["n"] == 16


def test_the_reservation_is_multiplied_by_n_and_the_output_cap_clamped_so_n_choices_fit(
    gateway: Callable[..., SidecarThread], openai_up: FakeOpenAI
) -> None:
    sc = gateway(capped=True)
    # One choice of 400 tokens fits the $0.002 left (50 + 400 x 4 = 1,650 micro-USD): sent as asked.
    openai_up.script([Fault.ok(usage=FakeUsage(50, 10))])
    assert chat(sc, model="small/gpt-4o-mini", max_tokens=400).status_code == 200
    assert openai_up.requests[-1].json["max_completion_tokens"] == 400
    remaining = CAP_MICRO_USD - spent(sc)
    assert remaining == CAP_MICRO_USD - (50 + 10 * 4)

    # Three choices of 400 do not (50 + 3 x 400 x 4 = 4,850): each choice's cap is clamped to fit.
    clamped = (remaining - 50) // (3 * 4)
    openai_up.script([Fault.ok(usage=FakeUsage(50, 3 * clamped))])  # every choice ran to its cap
    reply = chat(sc, model="small/gpt-4o-mini", max_tokens=400, n=3)
    assert reply.status_code == 200, reply.text
    sent = openai_up.requests[-1].json
    assert sent["n"] == 3 and sent["max_completion_tokens"] == clamped
    assert 50 + 3 * clamped * 4 <= remaining < 50 + 3 * (clamped + 1) * 4

    refused = chat(sc, model="small/gpt-4o-mini", max_tokens=400, n=3)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
    assert len(openai_up.requests) == 2
    assert spent(sc) <= CAP_MICRO_USD


# -- max_tokens ---------------------------------------------------------------------------------------


def test_max_tokens_above_the_models_maximum_is_clamped_and_reserved_at_the_clamped_value(
    gateway: Callable[..., SidecarThread], openai_up: FakeOpenAI
) -> None:
    sc = gateway(capped=True)
    reply = chat(sc, model="small/gpt-4o", max_tokens=10**12)
    assert reply.status_code == 200, reply.text  # reserved at 100 tokens, not 10^12: it fits the cap
    assert openai_up.requests[-1].json["max_completion_tokens"] == 100
    assert reply.headers["x-sluicegate-verdict"] == "allow"


def test_max_tokens_given_as_a_float_is_a_type_error(
    gateway: Callable[..., SidecarThread], openai_up: FakeOpenAI
) -> None:
    sc = gateway()
    reply = chat(sc, model="small/gpt-4o", max_tokens=1e12)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "max_tokens"
    assert openai_up.requests == []


# -- context window -----------------------------------------------------------------------------------


def test_a_prompt_longer_than_the_models_context_window_is_a_400_with_no_spend_and_no_upstream_call(
    gateway: Callable[..., SidecarThread], openai_up: FakeOpenAI
) -> None:
    sc = gateway(capped=True)
    reply = chat(sc, model="small/gpt-4o-mini", messages=prompt_of(SMALL_WINDOW + 1))
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert openai_up.requests == []
    assert ledger_entries(sc) == []
    assert metric_value(sc, "sluicegate_budget_spent_usd") == 0

    at_the_limit = chat(sc, model="small/gpt-4o-mini", messages=prompt_of(SMALL_WINDOW), max_tokens=8)
    assert at_the_limit.status_code == 200, at_the_limit.text


def test_a_tier_skips_a_candidate_whose_context_window_is_too_small(
    gateway: Callable[..., SidecarThread], openai_up: FakeOpenAI
) -> None:
    sc = gateway()
    short = chat(sc, model="tier:standard")
    assert short.headers["x-sluicegate-routed-model"] == "openai/gpt-4o-mini"  # the cheaper one
    long = chat(sc, model="tier:standard", messages=prompt_of(SMALL_WINDOW + 50))
    assert long.status_code == 200, long.text
    assert long.headers["x-sluicegate-routed-model"] == "openai/gpt-4o"
    assert long.headers["x-sluicegate-fallbacks"] == "0"  # skipped, not tried and failed
    assert [r.json["model"] for r in openai_up.requests] == ["gpt-4o-mini", "gpt-4o"]


def test_embeddings_are_not_held_to_the_context_window_as_a_batch(
    gateway: Callable[..., SidecarThread], openai_up: FakeOpenAI
) -> None:
    sc = gateway()
    batch = ["x" * 400] * 10  # each input is small; together they are far past the window
    reply = httpx.post(
        f"{sc.base_url}/embeddings", json={"model": "small/gpt-4o-mini", "input": batch}, timeout=10
    )
    assert reply.status_code == 200, reply.text
