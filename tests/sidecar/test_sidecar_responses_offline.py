"""The Responses API offline: the built-in mock provider answers /v1/responses (as it answers the same
conversation in chat), so `make run` serves the Responses API with no keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.support.sidecar_harness import SidecarThread, connection, ledger_entries, priced, render_dir

TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        [connection("mock", "mock", [priced("mock-small", 0.1, 0.4)], mock={"latencyMs": 0, "seed": 7})],
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        yield sc


@pytest.fixture
def api(offline: SidecarThread) -> Iterator[OpenAI]:
    with OpenAI(base_url=offline.base_url, api_key="sk-none", max_retries=0) as c:
        yield c


def test_the_mock_answers_a_response_and_the_same_text_streamed(api, offline) -> None:
    whole = api.responses.create(
        model="mock-small", input="Tell me about the gateway", instructions="Be brief"
    )
    assert whole.status == "completed" and len(whole.output_text.split()) > 10
    assert whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0
    events = list(
        api.responses.create(
            model="mock-small", input="Tell me about the gateway", instructions="Be brief", stream=True
        )
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == whole.output_text
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens
    entries = ledger_entries(offline)
    assert [e["status"] for e in entries] == [200, 200] and entries[0]["costBasis"] == "exact"


def test_the_mock_calls_a_required_tool_and_answers_its_output(api) -> None:
    first = api.responses.create(model="mock-small", input="Weather?", tools=[TOOL], tool_choice="required")
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and set(json.loads(call.arguments)) == {"city"}
    follow_up = [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
    ]
    second = api.responses.create(model="mock-small", input=follow_up, tools=[TOOL])
    assert second.output_text


def test_the_mock_honours_max_output_tokens_as_an_incomplete_response(api) -> None:
    response = api.responses.create(model="mock-small", input="hi", max_output_tokens=16)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 16


def test_the_mock_refuses_previous_response_id_as_it_keeps_no_state(api) -> None:
    import openai

    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        api.responses.create(model="mock-small", input="and?", previous_response_id="resp_1")


class Answer(BaseModel):
    answer: str


def test_the_mock_answers_structured_output_that_parses(api) -> None:
    parsed = api.responses.parse(model="mock-small", input="Answer", text_format=Answer)
    assert isinstance(parsed.output_parsed, Answer)
