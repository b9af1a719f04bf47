"""`make run` for every client: the examples rendered --offline, served by the real sidecar on the
built-in mock, driven by the real anthropic and openai SDKs — Messages (tools, streams, betas,
count_tokens, models), chat agent loops, structured output and logprobs, with no keys and no network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from openai import OpenAI
from pydantic import BaseModel

from sluicegate_cli.main import main as cli
from tests.support.sidecar_harness import SidecarThread

ROOT = Path(__file__).resolve().parents[2]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"],
    },
}


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Iterator[SidecarThread]:
    base = tmp_path_factory.mktemp("offline")
    assert cli(["render", "-f", str(ROOT / "examples"), "-o", str(base / "config"), "--offline"]) == 0
    with SidecarThread(base / "config", base / "ledger", access_log=False) as sidecar:
        yield sidecar


@pytest.fixture(scope="module")
def claude_sdk(offline: SidecarThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=offline.root_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def gpt_sdk(offline: SidecarThread) -> Iterator[OpenAI]:
    with OpenAI(base_url=offline.base_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def test_messages_are_answered_offline_for_an_anthropic_connection(claude_sdk) -> None:
    raw = claude_sdk.messages.with_raw_response.create(
        model="claude-sonnet", max_tokens=30, messages=[{"role": "user", "content": "hi"}]
    )
    message = raw.parse()
    assert message.type == "message" and message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens > 0 and message.stop_reason in ("end_turn", "max_tokens")
    assert raw.headers["x-sluicegate-routed-model"] == "mock/claude-sonnet-4-6"
    assert float(raw.headers["x-sluicegate-cost-usd"]) > 0  # the real model's catalog price


def test_messages_work_offline_for_a_connection_declared_as_any_kind(claude_sdk) -> None:
    message = claude_sdk.messages.create(
        model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text


def test_an_anthropic_agent_loop_calls_the_tool_then_answers_streamed_and_not(claude_sdk) -> None:
    sdk = claude_sdk
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
    first = sdk.messages.create(model="claude-haiku", max_tokens=200, tools=[WEATHER], messages=messages)
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert isinstance(call.input["city"], str) and 1 <= call.input["days"] <= 7
    with sdk.messages.stream(model="claude-haiku", max_tokens=200, tools=[WEATHER], messages=messages) as s:
        streamed = s.get_final_message()
    assert streamed.content[0].type == "tool_use" and streamed.content[0].input == call.input
    messages += [
        {"role": "assistant", "content": [c.model_dump() for c in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
    ]
    with sdk.messages.stream(model="claude-haiku", max_tokens=60, tools=[WEATHER], messages=messages) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.stop_reason in ("end_turn", "max_tokens")


def test_betas_count_tokens_and_models_work_offline(claude_sdk) -> None:
    sdk = claude_sdk
    message = sdk.beta.messages.create(
        model="claude-opus",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        betas=["interleaved-thinking-2025-05-14"],
    )
    assert message.content[0].text
    raw = sdk.messages.with_raw_response.count_tokens(
        model="claude-opus", messages=[{"role": "user", "content": "word " * 100}], tools=[WEATHER]
    )
    assert raw.parse().input_tokens > 100 and raw.headers["x-sluicegate-token-count"] == "estimate"
    listed = [m.id for m in sdk.models.list()]
    assert {"tier:premium", "anthropic/claude-opus-4-5", "claude-opus"} <= set(listed)
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.type == "not_found_error"


def test_an_openai_agent_loop_gets_a_tool_call_then_text(gpt_sdk) -> None:
    tool = {"type": "function", "function": {"name": WEATHER["name"], "parameters": WEATHER["input_schema"]}}
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    first = gpt_sdk.chat.completions.create(model="tier:standard", messages=messages, tools=[tool])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city", "days"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
    ]
    second = gpt_sdk.chat.completions.create(model="tier:standard", messages=messages, tools=[tool])
    assert second.choices[0].finish_reason in ("stop", "length") and second.choices[0].message.content


class Invoice(BaseModel):
    customer: str
    total_cents: int
    paid: bool
    lines: list[str]


def test_structured_output_parses_into_the_requested_model(gpt_sdk) -> None:
    completion = gpt_sdk.chat.completions.parse(
        model="tier:light",
        messages=[{"role": "user", "content": "Extract the invoice."}],
        response_format=Invoice,
    )
    invoice = completion.choices[0].message.parsed
    assert isinstance(invoice, Invoice) and invoice.lines


def test_logprobs_come_back_when_asked(gpt_sdk) -> None:
    completion = gpt_sdk.chat.completions.create(
        model="tier:light",
        messages=[{"role": "user", "content": "hi"}],
        logprobs=True,
        top_logprobs=2,
        max_tokens=8,
    )
    entries = completion.choices[0].logprobs.content
    assert len(entries) == 8 and all(len(e.top_logprobs) == 2 for e in entries)
    assert "".join(e.token for e in entries) == completion.choices[0].message.content
