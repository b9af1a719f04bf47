"""Reasoning on translated Responses (Gemini connections), with the real openai SDK: ``reasoning``
turns on Gemini's thinking (a budget carved out of the output cap the reservation was made for, a
level on Gemini 3), thought summaries come back as reasoning items (streamed as reasoning summary
events), a function call's thought signature goes back with its reasoning item, and thoughts are
charged as output and reported as reasoning tokens."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.sidecar.conftest import GEMINI_KEY
from tests.support.fakes import DEFAULT_TEXT, FakeGemini
from tests.support.fakes_gemini import THOUGHT_TEXT, thought_signature
from tests.support.fakes_server import FakeUsage
from tests.support.sidecar_harness import (
    SidecarThread,
    connection,
    genai_micro_usd,
    ledger_entries,
    render_dir,
)

FLASH = "gemini-2.5-flash"
GEMINI_3 = "gemini-3-pro-preview"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def gateway(tmp_path: Path, gemini_up: FakeGemini) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        connection("gemini", "gemini", [FLASH, GEMINI_3], base_url=gemini_up.root_url, key=GEMINI_KEY),
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        yield sc


@pytest.fixture
def client(gateway: SidecarThread) -> Iterator[OpenAI]:
    with OpenAI(base_url=gateway.base_url, api_key="sk-app-placeholder", max_retries=0) as c:
        yield c


def _thinking(gemini_up: FakeGemini) -> tuple[dict[str, Any], Any]:
    config = gemini_up.last_request.json["generationConfig"]
    return config.get("thinkingConfig"), config.get("maxOutputTokens")


def test_reasoning_effort_asks_for_thoughts_and_they_come_back_as_a_reasoning_item(
    client: OpenAI, gemini_up: FakeGemini
) -> None:
    response = client.responses.create(
        model=f"gemini/{FLASH}",
        input="Think, then answer",
        reasoning={"effort": "medium"},
        max_output_tokens=20_000,
    )
    assert _thinking(gemini_up) == ({"includeThoughts": True, "thinkingBudget": 8192}, 20_000 - 8192)
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert [part.text for part in reasoning.summary] == [THOUGHT_TEXT]
    assert response.output_text == DEFAULT_TEXT


def test_the_thinking_budget_is_carved_out_of_the_output_cap_so_thoughts_and_text_stay_within_it(
    client: OpenAI, gemini_up: FakeGemini
) -> None:
    client.responses.create(
        model=f"gemini/{FLASH}", input="Think", reasoning={"effort": "high"}, max_output_tokens=3000
    )
    assert _thinking(gemini_up) == ({"includeThoughts": True, "thinkingBudget": 1500}, 1500)
    small = client.responses.create(
        model=f"gemini/{FLASH}", input="Think", reasoning={"effort": "high"}, max_output_tokens=600
    )  # no room for a 512-token budget beside the answer: the model's default thinking, as without reasoning
    assert _thinking(gemini_up) == (None, 600) and [item.type for item in small.output] == ["message"]


def test_gemini_3_gets_a_thinking_level_within_the_cap_the_client_set(
    client: OpenAI, gemini_up: FakeGemini
) -> None:
    response = client.responses.create(
        model=f"gemini/{GEMINI_3}", input="Think", reasoning={"effort": "low"}, max_output_tokens=4000
    )
    assert _thinking(gemini_up) == ({"includeThoughts": True, "thinkingLevel": "low"}, 4000)
    assert [item.type for item in response.output] == ["reasoning", "message"]


def test_without_reasoning_no_thoughts_are_asked_for_and_no_reasoning_item_returned(
    client: OpenAI, gemini_up: FakeGemini
) -> None:
    response = client.responses.create(model=f"gemini/{FLASH}", input="Answer")
    assert "thinkingConfig" not in (gemini_up.last_request.json.get("generationConfig") or {})
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == 0


def test_thoughts_are_charged_as_output_and_reported_as_reasoning_tokens(
    client: OpenAI, gateway: SidecarThread, gemini_up: FakeGemini
) -> None:
    raw = client.responses.with_raw_response.create(
        model=f"gemini/{FLASH}", input="Think", reasoning={"effort": "low"}
    )
    response = raw.parse()
    billed = gemini_up.last_usage
    assert billed is not None
    thought, said = len(THOUGHT_TEXT.split()), len(DEFAULT_TEXT.split())
    assert billed.output_tokens == thought + said == response.usage.output_tokens
    assert response.usage.output_tokens_details.reasoning_tokens == thought
    cost = genai_micro_usd(billed, FLASH, "google")
    assert cost > genai_micro_usd(FakeUsage(billed.input_tokens, said), FLASH, "google")
    assert Decimal(raw.headers["x-sluicegate-cost-usd"]) * 1_000_000 == pytest.approx(cost, abs=1)
    entry = ledger_entries(gateway)[-1]
    assert entry["costMicroUSD"] == cost and entry["usage"]["output"] == thought + said


def test_streamed_thoughts_arrive_as_reasoning_summary_events_the_sdk_assembles(
    client: OpenAI, gateway: SidecarThread, gemini_up: FakeGemini
) -> None:
    with client.responses.stream(
        model=f"gemini/{FLASH}", input="Think", reasoning={"effort": "low"}
    ) as stream:
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
    assert types[reasoning_end : reasoning_end + 4] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",  # then the message
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(e.delta for e in deltas) == THOUGHT_TEXT and len(deltas) > 1
    assert {(e.output_index, e.summary_index) for e in deltas} == {(0, 0)}
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and [p.text for p in reasoning.summary] == [THOUGHT_TEXT]
    assert final.output_text == DEFAULT_TEXT and message.type == "message"
    thought = len(THOUGHT_TEXT.split())
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == thought
    assert ledger_entries(gateway)[-1]["usage"]["output"] == final.usage.output_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["created", "streamed"])
def test_a_reasoning_item_sent_back_in_a_tool_loop_gives_the_call_its_thought_signature(
    client: OpenAI, gemini_up: FakeGemini, stream: bool
) -> None:
    gemini_up.tool_input = {"city": "Paris"}
    ask: dict[str, Any] = {"model": f"gemini/{FLASH}", "tools": [TOOL], "reasoning": {"effort": "low"}}
    if stream:
        with client.responses.stream(input="Weather in Paris?", **ask) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(input="Weather in Paris?", **ask)
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    assert reasoning.encrypted_content == "gemini.thought_signature:" + thought_signature(THOUGHT_TEXT)
    follow_up = [
        {"role": "user", "content": "Weather in Paris?"},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
    ]
    client.responses.create(input=follow_up, **ask | {"tools": [TOOL], "tool_choice": "none"})
    model_turn = gemini_up.last_request.json["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": thought_signature(THOUGHT_TEXT),
        }
    ]


def test_a_reasoning_item_another_provider_sealed_is_dropped_and_the_call_keeps_the_sentinel(
    client: OpenAI, gemini_up: FakeGemini
) -> None:
    follow_up = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "anthropic.thinking:EqQB"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
    ]
    client.responses.create(
        model=f"gemini/{FLASH}",
        input=follow_up,
        tools=[TOOL],
        tool_choice="none",
        reasoning={"effort": "low"},
    )
    parts = gemini_up.last_request.json["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator" and len(parts) == 1
