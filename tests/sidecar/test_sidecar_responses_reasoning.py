"""Reasoning on translated Responses (Anthropic connections), with the real openai SDK: ``reasoning``
turns on Anthropic's extended thinking within the output cap the budget reserved for, thinking comes
back as reasoning items (streamed as reasoning summary events), a reasoning item sent back returns
the signed thinking block a tool loop needs, and thinking is charged as output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from openai import OpenAI

from tests.sidecar.conftest import CLAUDE
from tests.support.fakes import DEFAULT_TEXT, FakeAnthropic
from tests.support.fakes_anthropic import THINKING_TEXT, signature
from tests.support.sidecar_harness import SidecarThread, genai_micro_usd, ledger_entries

MODEL = f"anthropic/{CLAUDE}"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client(gateway: SidecarThread) -> Iterator[OpenAI]:
    with OpenAI(base_url=gateway.base_url, api_key="sk-app-placeholder", max_retries=0) as c:
        yield c


def test_reasoning_effort_turns_on_thinking_and_it_comes_back_as_a_reasoning_item(
    client: OpenAI, anthropic_up: FakeAnthropic
) -> None:
    response = client.responses.create(
        model=MODEL, input="Think, then answer", reasoning={"effort": "medium"}
    )
    sent = anthropic_up.last_request.json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert sent["max_tokens"] > 8192
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert [part.text for part in reasoning.summary] == [THINKING_TEXT]
    assert reasoning.encrypted_content == "anthropic.thinking:" + signature(THINKING_TEXT)
    assert response.output_text == DEFAULT_TEXT


def test_without_reasoning_no_thinking_is_asked_for_and_no_reasoning_item_returned(
    client: OpenAI, anthropic_up: FakeAnthropic
) -> None:
    response = client.responses.create(model=MODEL, input="Answer")
    assert "thinking" not in anthropic_up.last_request.json
    assert [item.type for item in response.output] == ["message"]


def test_the_thinking_budget_stays_below_the_output_cap_the_client_set(
    client: OpenAI, anthropic_up: FakeAnthropic
) -> None:
    client.responses.create(model=MODEL, input="Think", reasoning={"effort": "high"}, max_output_tokens=3000)
    assert anthropic_up.last_request.json["max_tokens"] == 3000
    assert anthropic_up.last_request.json["thinking"] == {"type": "enabled", "budget_tokens": 2999}
    small = client.responses.create(
        model=MODEL, input="Think", reasoning={"effort": "high"}, max_output_tokens=500
    )  # no room for Anthropic's least budget (1024): answered without thinking
    assert "thinking" not in anthropic_up.last_request.json and small.status == "completed"
    assert [item.type for item in small.output] == ["message"]


def test_thinking_is_charged_as_output_in_the_reply_and_the_ledger(
    client: OpenAI, gateway: SidecarThread, anthropic_up: FakeAnthropic
) -> None:
    raw = client.responses.with_raw_response.create(model=MODEL, input="Think", reasoning={"effort": "low"})
    response = raw.parse()
    billed = anthropic_up.last_usage
    assert billed is not None
    thought, said = len(THINKING_TEXT.split()), len(DEFAULT_TEXT.split())
    assert billed.output_tokens == thought + said == response.usage.output_tokens
    cost = genai_micro_usd(billed, CLAUDE, "anthropic")
    assert Decimal(raw.headers["x-sluicegate-cost-usd"]) * 1_000_000 == pytest.approx(cost, abs=1)
    entry = ledger_entries(gateway)[-1]
    assert entry["costMicroUSD"] == cost and entry["usage"]["output"] == thought + said


def test_streamed_thinking_arrives_as_reasoning_summary_events_the_sdk_assembles(
    client: OpenAI, gateway: SidecarThread, anthropic_up: FakeAnthropic
) -> None:
    with client.responses.stream(model=MODEL, input="Think", reasoning={"effort": "low"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
    ]
    reasoning_end = types.index("response.reasoning_summary_text.done")
    assert types[reasoning_end : reasoning_end + 3] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    assert types[reasoning_end + 3] == "response.output_item.added"  # then the message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(e.delta for e in deltas) == THINKING_TEXT
    assert {(e.output_index, e.summary_index) for e in deltas} == {(0, 0)}
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and [p.text for p in reasoning.summary] == [THINKING_TEXT]
    assert reasoning.encrypted_content == "anthropic.thinking:" + signature(THINKING_TEXT)
    assert final.output_text == DEFAULT_TEXT and message.type == "message"
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 0
    assert ledger_entries(gateway)[-1]["usage"]["output"] == final.usage.output_tokens


def _tool_loop(client: OpenAI, anthropic_up: FakeAnthropic, *, stream: bool) -> list[dict[str, Any]]:
    """One tool turn with thinking; returns the first reply's output as the client sends it back."""
    anthropic_up.tool_input = {"city": "Paris"}
    ask: dict[str, Any] = {"model": MODEL, "tools": [TOOL], "reasoning": {"effort": "low"}}
    if stream:
        with client.responses.stream(input="Weather in Paris?", **ask) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(input="Weather in Paris?", **ask)
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    return [item.model_dump(exclude_none=True) for item in first.output]


@pytest.mark.parametrize("stream", [False, True], ids=["created", "streamed"])
def test_a_reasoning_item_sent_back_in_a_tool_loop_returns_the_signed_thinking_block(
    client: OpenAI, anthropic_up: FakeAnthropic, stream: bool
) -> None:
    output = _tool_loop(client, anthropic_up, stream=stream)
    call_id = output[1]["call_id"]
    follow_up = [
        {"role": "user", "content": "Weather in Paris?"},
        *output,
        {"type": "function_call_output", "call_id": call_id, "output": "Sunny, 21 C"},
    ]
    second = client.responses.create(model=MODEL, input=follow_up, tools=[TOOL], reasoning={"effort": "low"})
    assert second.status == "completed" and second.output_text == DEFAULT_TEXT
    sent = anthropic_up.last_request.json
    assert "thinking" in sent
    user, assistant, result = sent["messages"]
    thinking = {"type": "thinking", "thinking": THINKING_TEXT, "signature": signature(THINKING_TEXT)}
    assert assistant["content"][0] == thinking
    assert assistant["content"][1]["type"] == "tool_use" and assistant["content"][1]["id"] == call_id
    assert result["content"][0]["type"] == "tool_result"


def test_a_tool_loop_whose_reasoning_item_was_dropped_is_answered_without_thinking(
    client: OpenAI, anthropic_up: FakeAnthropic
) -> None:
    output = _tool_loop(client, anthropic_up, stream=False)
    follow_up = [
        {"role": "user", "content": "Weather in Paris?"},
        output[1],  # the function call alone: Anthropic would refuse thinking without its block
        {"type": "function_call_output", "call_id": output[1]["call_id"], "output": "Sunny"},
    ]
    second = client.responses.create(model=MODEL, input=follow_up, tools=[TOOL], reasoning={"effort": "low"})
    assert second.output_text == DEFAULT_TEXT
    sent = anthropic_up.last_request.json
    assert "thinking" not in sent and "thinking" not in json.dumps(sent["messages"])
