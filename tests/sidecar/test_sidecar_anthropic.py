"""Anthropic connections through the real sidecar: the anthropic SDK on /v1/messages (passed through)
and the openai SDK on /v1/chat/completions (translated), streaming and not, with tool calls."""

from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import pytest
from openai import OpenAI

from tests.sidecar.conftest import ANTHROPIC_KEY, CLAUDE
from tests.support.fakes import DEFAULT_TEXT, FakeUsage, Fault
from tests.support.sidecar_harness import genai_micro_usd, ledger_entries, wait_until

APP_KEY = "sluicegate-placeholder-app-key"
MODEL = CLAUDE
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def anthropic_client(sidecar) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sidecar.root_url, api_key=APP_KEY, max_retries=0)


def openai_client(sidecar) -> OpenAI:
    return OpenAI(base_url=sidecar.base_url, api_key=APP_KEY, max_retries=0)


def assert_only_the_connection_key_reached(fake) -> None:
    for sent in fake.requests:
        assert sent.headers.get("x-api-key") == ANTHROPIC_KEY
        assert "authorization" not in sent.headers
        assert APP_KEY not in json.dumps(sent.headers) and APP_KEY.encode() not in sent.body
        assert not any(h.startswith(("x-sluicegate-", "x-portkey-")) for h in sent.headers)


def micro(header: str) -> Decimal:
    return Decimal(header) * 1_000_000


def settled_entry(gateway, request_id: str) -> dict:
    return wait_until(
        lambda: next((e for e in ledger_entries(gateway) if e["requestId"] == request_id), None)
    )


def test_messages_create_is_passed_through_with_the_connection_key_and_priced(gateway, anthropic_up) -> None:
    anthropic_up.usage = FakeUsage(1500, 40, cached_tokens=300, cache_write_tokens=100)
    raw = anthropic_client(gateway).messages.with_raw_response.create(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Say hello"}],
        extra_headers={"X-Sluicegate-Team": "payments"},
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == DEFAULT_TEXT
    assert message.usage.input_tokens == 1100  # Anthropic's own usage, untouched
    assert message.usage.cache_read_input_tokens == 300
    assert raw.headers["x-sluicegate-routed-model"] == f"anthropic/{MODEL}"
    expected = genai_micro_usd(anthropic_up.usage, MODEL, "anthropic")
    assert micro(raw.headers["x-sluicegate-cost-usd"]) == pytest.approx(expected, abs=1)
    sent = anthropic_up.last_request
    assert sent.path == "/v1/messages" and sent.json["model"] == MODEL and sent.json["max_tokens"] == 200
    assert_only_the_connection_key_reached(anthropic_up)


def test_messages_stream_gives_the_final_message_and_the_ledger_charges_the_reported_usage(
    gateway, anthropic_up
) -> None:
    anthropic_up.usage = FakeUsage(900, 12)
    with anthropic_client(gateway).messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert "".join(texts) == DEFAULT_TEXT
    assert final.stop_reason == "end_turn" and final.content[0].text == DEFAULT_TEXT
    assert final.usage.output_tokens == 12
    entry = settled_entry(gateway, request_id)
    assert entry["status"] == 200 and entry["costBasis"] == "exact"
    assert entry["usage"]["input"] == 900 and entry["usage"]["output"] == 12
    assert entry["costMicroUSD"] == pytest.approx(
        genai_micro_usd(FakeUsage(900, 12), MODEL, "anthropic"), abs=1
    )
    assert anthropic_up.last_request.json["stream"] is True
    assert_only_the_connection_key_reached(anthropic_up)


def test_messages_with_tools_return_the_tool_use_block(gateway, anthropic_up) -> None:
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
    message = anthropic_client(gateway).messages.create(
        model=f"anthropic/{MODEL}",
        max_tokens=100,
        tools=[tool],
        messages=[{"role": "user", "content": "Paris?"}],
    )
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "tool_use" and message.content[0].input == {"location": "Paris"}


def test_messages_for_a_model_without_an_anthropic_connection_is_refused_before_the_upstream(
    gateway, openai_up
) -> None:
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(gateway).messages.create(
            model="openai/gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert openai_up.requests == []


def test_openai_chat_is_translated_to_messages_and_back(gateway, anthropic_up) -> None:
    anthropic_up.usage = FakeUsage(700, 15, cached_tokens=200)
    raw = openai_client(gateway).chat.completions.with_raw_response.create(
        model=f"anthropic/{MODEL}",
        max_tokens=300,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 700 and completion.usage.completion_tokens == 15
    expected = genai_micro_usd(FakeUsage(700, 15, cached_tokens=200), MODEL, "anthropic")
    assert micro(raw.headers["x-sluicegate-cost-usd"]) == pytest.approx(expected, abs=1)
    sent = anthropic_up.last_request.json
    assert sent["system"] == "Be brief."
    assert [m["role"] for m in sent["messages"]] == ["user"]
    assert sent["messages"][0]["content"] in ("Say hello", [{"type": "text", "text": "Say hello"}])
    assert sent["max_tokens"] == 300
    assert_only_the_connection_key_reached(anthropic_up)


def test_openai_chat_stream_from_anthropic_ends_properly_and_is_charged_exactly(
    gateway, anthropic_up
) -> None:
    anthropic_up.usage = FakeUsage(400, 12)
    response = openai_client(gateway).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    entry = settled_entry(gateway, response.headers["x-request-id"])
    assert entry["costBasis"] == "exact"
    assert entry["costMicroUSD"] == pytest.approx(
        genai_micro_usd(FakeUsage(400, 12), MODEL, "anthropic"), abs=1
    )


def test_openai_tool_calls_are_translated_both_ways_unstreamed(gateway, anthropic_up) -> None:
    completion = openai_client(gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    sent = anthropic_up.last_request.json
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    assert sent["tool_choice"]["type"] == "tool" and sent["tool_choice"]["name"] == "get_weather"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "location": "Paris"
    }


def test_openai_tool_calls_are_translated_when_streamed(gateway, anthropic_up) -> None:
    stream = openai_client(gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    names, arguments, finish = [], "", None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names.append(call.function.name)
                arguments += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    assert names == ["get_weather"]
    assert json.loads(arguments) == {"location": "Paris"}
    assert finish == "tool_calls"


def test_an_overloaded_anthropic_is_a_429_with_retry_after_when_nothing_else_serves(
    gateway, anthropic_up
) -> None:
    anthropic_up.script([Fault.status(529, headers={"retry-after": "4"})])
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client(gateway).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.response.headers["retry-after"] == "4"
    assert len(anthropic_up.requests) == 1


def test_messages_passthrough_forwards_the_clients_anthropic_beta_header(gateway, anthropic_up) -> None:
    anthropic_client(gateway).beta.messages.create(
        model=MODEL,
        max_tokens=10,
        messages=[{"role": "user", "content": "x"}],
        betas=["token-efficient-tools-2025-02-19"],
    )
    assert anthropic_up.last_request.headers.get("anthropic-beta") == "token-efficient-tools-2025-02-19"
