"""The output cap the gateway sends (issue 13, item 10; fault 2).

A request goes out with the client's own cap, or none; the gateway writes a cap only when the budget
bound needs one (clamped to what remains, or a model whose output limit the catalog does not know)
and then in the field the model accepts: ``max_completion_tokens`` for OpenAI chat (its reasoning
models refuse ``max_tokens``), ``max_tokens`` for /v1/completions and OpenAI-compatible servers.
Anthropic's Messages API needs a cap on every request: the model's own limit when the client sets none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.support.fakes import FakeAnthropic, FakeOpenAI, FakeUsage, RecordedRequest
from tests.support.fakes_server import Plan, json_plan
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    priced,
    render_dir,
    tier,
    wait_for,
)

REASONING = ("o1", "o3", "o4-", "gpt-5")
FINE_TUNED = "ft:gpt-4o-mini-2024-07-18:acme::9x2k"
PROMPT = [{"role": "user", "content": "Write a haiku about budgets."}]


class ReasoningOpenAI(FakeOpenAI):
    """OpenAI refusing ``max_tokens`` on its reasoning models, with its real error."""

    def answer(
        self, request: RecordedRequest, text: str, usage: FakeUsage | None
    ) -> tuple[Plan, FakeUsage | None]:
        body = request.json
        if str(body.get("model", "")).startswith(REASONING) and "max_tokens" in body:
            message = (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            )
            error = {"message": message, "type": "invalid_request_error", "param": "max_tokens"}
            return json_plan(400, {"error": error | {"code": "unsupported_parameter"}}), None
        return super().answer(request, text, usage)


@pytest.fixture
def openai_up() -> Iterator[ReasoningOpenAI]:
    with ReasoningOpenAI(usage=FakeUsage(20, 9)) as fake:
        yield fake


@pytest.fixture
def anthropic_up() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(usage=FakeUsage(20, 9)) as fake:
        yield fake


@pytest.fixture
def start(openai_up: ReasoningOpenAI, anthropic_up: FakeAnthropic, tmp_path: Path) -> Iterator[Any]:
    """A sidecar over OpenAI (o3-mini and gpt-4o with declared output limits, gpt-4.1 with the bundled
    table's, a fine-tuned chat model and davinci-002 with none), Anthropic (claude-sonnet-4-5,
    64,000) and Mistral, optionally capped."""
    started: list[SidecarThread] = []

    def run(cap_usd: float | None = None) -> SidecarThread:
        objects: list[Any] = [
            connection(
                "openai",
                "openai",
                [
                    priced("o3-mini", 1.0, 4.0, maxOutputTokens=100_000),
                    priced("gpt-4o", 1.0, 4.0, maxOutputTokens=16_384),
                    priced("gpt-4.1", 1.0, 4.0),  # its limit from the bundled table: 32,768
                    priced(FINE_TUNED, 1.0, 4.0),  # limits unknown
                    priced("davinci-002", 1.0, 4.0),
                ],
                base_url=openai_up.base_url,
            ),
            connection(
                "anthropic",
                "anthropic",
                [priced("claude-sonnet-4-5", 1.0, 4.0, maxOutputTokens=64_000)],
                base_url=anthropic_up.base_url,
            ),
            connection(
                "mistral", "mistral", [priced("mistral-small-latest", 1.0, 4.0)], base_url=openai_up.base_url
            ),
            tier("reasoning", 10, [("openai", "o3-mini")]),
        ]
        if cap_usd is not None:
            objects.append(budget("cap", cap_usd, action="BLOCK"))
        sidecar = SidecarThread(
            render_dir(tmp_path / "config", objects), tmp_path / "ledger", access_log=False
        )
        started.append(sidecar.start())
        return sidecar

    yield run
    for sidecar in started:
        sidecar.stop()


def client(sc: SidecarThread) -> OpenAI:
    return OpenAI(base_url=sc.base_url, api_key="app-key", max_retries=0)


def cap_fields(request: RecordedRequest) -> dict[str, Any]:
    return {k: v for k, v in request.json.items() if k in ("max_tokens", "max_completion_tokens")}


def test_a_reasoning_model_under_a_roomy_budget_gets_the_request_unchanged(start, openai_up) -> None:
    sc = start(cap_usd=10.0)  # 100,000 output tokens at $4/M are $0.40: the model's own limit fits
    reply = client(sc).chat.completions.create(model="openai/o3-mini", messages=PROMPT)
    assert reply.choices[0].message.content
    assert cap_fields(openai_up.last_request) == {}  # no cap injected, no max_tokens the model refuses


def test_a_reasoning_model_clamped_by_the_budget_gets_max_completion_tokens(start, openai_up) -> None:
    sc = start(cap_usd=0.002)  # 2,000 micro-USD: about 490 output tokens at $4/M
    reply = client(sc).chat.completions.create(model="tier:reasoning", messages=PROMPT)
    assert reply.choices[0].message.content
    sent = cap_fields(openai_up.last_request)
    assert list(sent) == ["max_completion_tokens"]
    assert 400 < sent["max_completion_tokens"] < 500  # what the $0.002 left can pay for, not 4,096


def test_a_clients_max_tokens_reaches_a_reasoning_model_as_max_completion_tokens(start, openai_up) -> None:
    sc = start()
    body = {"model": "tier:reasoning", "messages": PROMPT, "max_tokens": 300}
    reply = httpx.post(f"{sc.base_url}/chat/completions", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    assert cap_fields(openai_up.last_request) == {"max_completion_tokens": 300}


def test_a_model_under_a_roomy_budget_is_not_cut_at_4096_output_tokens(start, openai_up) -> None:
    sc = start(cap_usd=10.0)
    client(sc).chat.completions.create(model="openai/gpt-4o", messages=PROMPT)
    assert cap_fields(openai_up.last_request) == {}  # its own 16,384-token limit applies, reserved
    client(sc).chat.completions.create(model="openai/gpt-4.1", messages=PROMPT)
    assert cap_fields(openai_up.last_request) == {}  # undeclared: the bundled table knows 32,768


def test_without_a_budget_no_cap_is_ever_injected(start, openai_up) -> None:
    sc = start()
    client(sc).chat.completions.create(model=f"openai/{FINE_TUNED}", messages=PROMPT)
    assert cap_fields(openai_up.last_request) == {}


def test_a_model_whose_output_limit_is_unknown_gets_4096_under_a_budget_in_the_field_it_accepts(
    start, openai_up
) -> None:
    sc = start(cap_usd=10.0)
    client(sc).chat.completions.create(model=f"openai/{FINE_TUNED}", messages=PROMPT)
    assert cap_fields(openai_up.last_request) == {"max_completion_tokens": 4_096}
    client(sc).completions.create(model="openai/davinci-002", prompt="Say hi")
    assert cap_fields(openai_up.last_request) == {"max_tokens": 4_096}  # the legacy endpoint's field
    client(sc).chat.completions.create(model="mistral/mistral-small-latest", messages=PROMPT)
    assert cap_fields(openai_up.last_request) == {"max_tokens": 4_096}  # Mistral refuses the other


def test_a_clients_max_completion_tokens_is_its_cap_and_the_smaller_of_two_caps_is_reserved(
    start, openai_up
) -> None:
    sc = start(cap_usd=10.0)
    client(sc).chat.completions.create(model="openai/gpt-4o", messages=PROMPT, max_completion_tokens=700)
    assert cap_fields(openai_up.last_request) == {"max_completion_tokens": 700}
    body = {"model": "openai/gpt-4o", "messages": PROMPT, "max_tokens": 50, "max_completion_tokens": 5_000}
    held: list[int] = []
    book = sc.gateway.budgets
    real_reserve = book.reserve

    def recording(attribution: Any, amount: int, now: Any, *, priced: bool = True) -> Any:
        held.append(amount)
        return real_reserve(attribution, amount, now, priced=priced)

    book.reserve = recording
    assert httpx.post(f"{sc.base_url}/chat/completions", json=body, timeout=10).status_code == 200
    assert cap_fields(openai_up.last_request) == {"max_completion_tokens": 50}
    assert held and held[0] < 50 * 4 + 200  # 50 output tokens at $4/M plus the prompt's bound


def test_anthropic_gets_the_models_own_output_limit_when_the_client_sets_none(start, anthropic_up) -> None:
    sc = start()
    reply = client(sc).chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=PROMPT)
    assert reply.choices[0].message.content
    assert anthropic_up.last_request.json["max_tokens"] == 64_000  # not a silent 4,096
    sc.run_sync(sc.gateway.ledger.flush())
    assert wait_for(lambda: ledger_lines(sc.ledger_dir))[0]["status"] == 200
