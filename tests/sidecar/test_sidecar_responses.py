"""The Responses API (POST /v1/responses) through the sidecar with the real openai SDK: passed through
to an OpenAI connection, translated for Anthropic and Gemini connections (each a fake upstream
speaking its provider's wire format), priced, attributed and in the ledger as chat is."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.sidecar.conftest import ANTHROPIC_KEY, CLAUDE, GEMINI, GEMINI_KEY, OPENAI_KEY
from tests.support.fakes import DEFAULT_TEXT, FakeAzureOpenAI, FakeServer, FakeUsage, Fault
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    genai_micro_usd,
    ledger_entries,
    ledger_lines,
    render_dir,
    tier,
)

APP_KEY = "sk-app-placeholder-must-not-travel"
MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": f"anthropic/{CLAUDE}", "gemini": f"gemini/{GEMINI}"}
PRICED_AS = {
    "openai": ("gpt-4o-mini", "openai"),
    "anthropic": (CLAUDE, "anthropic"),
    "gemini": (GEMINI, "google"),
}
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def three_kinds(directory: Path, openai_up: FakeServer, anthropic_up: FakeServer, gemini_up: FakeServer,
                *extra: Any) -> Path:  # fmt: skip
    return render_dir(
        directory,
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
            connection("anthropic", "anthropic", [CLAUDE], base_url=anthropic_up.root_url, key=ANTHROPIC_KEY),
            connection("gemini", "gemini", [GEMINI], base_url=gemini_up.root_url, key=GEMINI_KEY),
            tier("standard", 10, [("openai", "gpt-4o-mini"), ("anthropic", CLAUDE), ("gemini", GEMINI)]),
            *extra,
        ],
    )


@pytest.fixture
def upstreams(openai_up, anthropic_up, gemini_up) -> dict[str, FakeServer]:
    return {"openai": openai_up, "anthropic": anthropic_up, "gemini": gemini_up}


@pytest.fixture
def sidecar_with(tmp_path: Path, upstreams) -> Iterator[Callable[..., SidecarThread]]:
    started: list[SidecarThread] = []

    def start(*extra: Any) -> SidecarThread:
        config = three_kinds(tmp_path / "config", *upstreams.values(), *extra)
        sc = SidecarThread(config, tmp_path / "ledger")
        started.append(sc.start())
        return sc

    yield start
    for sc in started:
        sc.stop()


@pytest.fixture
def client() -> Iterator[Callable[[SidecarThread], OpenAI]]:
    """An openai SDK client for a sidecar; every one made is closed after the test."""
    made: list[OpenAI] = []

    def make(sc: SidecarThread) -> OpenAI:
        made.append(OpenAI(base_url=sc.base_url, api_key=APP_KEY, max_retries=0))
        return made[-1]

    yield make
    for c in made:
        c.close()


def cost_of(kind: str, usage: FakeUsage) -> int:
    model, provider = PRICED_AS[kind]
    return genai_micro_usd(usage, model, provider)


KINDS = pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])


@KINDS
def test_a_response_is_answered_priced_attributed_and_ledgered_for_every_provider_kind(
    client, gateway, upstreams, kind
) -> None:
    usage = FakeUsage(400, 12)
    upstreams[kind].script([Fault.ok(usage=usage)])
    raw = client(gateway).responses.with_raw_response.create(
        model=MODELS[kind],
        instructions="Answer in one sentence.",
        input="Say hello",
        extra_headers={"X-Sluicegate-Team": "payments"},
    )
    response = raw.parse()
    assert response.output_text == DEFAULT_TEXT
    assert response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (400, 12)
    assert raw.headers["x-sluicegate-routed-model"] == MODELS[kind]
    assert Decimal(raw.headers["x-sluicegate-cost-usd"]) * 1_000_000 == pytest.approx(
        cost_of(kind, usage), abs=1
    )
    entry = ledger_entries(gateway)[-1]
    assert (entry["status"], entry["connection"], entry["model"]) == (200, kind, PRICED_AS[kind][0])
    assert entry["requestedModel"] == MODELS[kind] and entry["attribution"]["team"] == "payments"
    assert entry["costBasis"] == "exact" and entry["usage"]["input"] == 400
    sent = upstreams[kind].last_request
    assert APP_KEY not in json.dumps(dict(sent.headers))
    if kind == "openai":  # passed through
        assert sent.path == "/v1/responses"
        assert sent.json["instructions"] == "Answer in one sentence." and sent.json["input"] == "Say hello"
    elif kind == "anthropic":  # translated into the Messages API
        assert sent.path == "/v1/messages" and sent.json["system"] == "Answer in one sentence."
        [message] = sent.json["messages"]
        assert message["role"] == "user" and "Say hello" in json.dumps(message["content"])
    else:
        assert sent.path.endswith(":generateContent")
        assert "Answer in one sentence." in json.dumps(sent.json["systemInstruction"])


@KINDS
def test_a_streamed_response_is_numbered_typed_events_ending_in_completed_with_usage(
    client, gateway, upstreams, kind
) -> None:
    usage = FakeUsage(90, 12)
    upstreams[kind].script([Fault.ok(usage=usage)])
    events = list(client(gateway).responses.create(model=MODELS[kind], input="hi", stream=True))
    types = [e.type for e in events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == DEFAULT_TEXT
    final = events[-1].response
    assert final.output_text == DEFAULT_TEXT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (90, 12)
    entry = ledger_entries(gateway)[-1]
    assert (entry["status"], entry["costBasis"]) == (200, "exact")
    assert entry["costMicroUSD"] == cost_of(kind, usage)


class City(BaseModel):
    name: str
    population: int


@KINDS
def test_parse_returns_the_pydantic_object_and_the_schema_reaches_the_upstream(
    client, gateway, upstreams, kind
) -> None:
    upstreams[kind].text = '{"name": "Paris", "population": 2100000}'
    parsed = client(gateway).responses.parse(
        model=MODELS[kind], input="Biggest French city?", text_format=City
    )
    assert parsed.output_parsed == City(name="Paris", population=2100000)
    sent = upstreams[kind].last_request.json
    if kind == "openai":
        assert sent["text"]["format"]["type"] == "json_schema" and sent["text"]["format"]["name"] == "City"
    elif kind == "anthropic":
        assert "population" in sent["system"]  # the schema, as an instruction
    else:
        assert "population" in json.dumps(sent["generationConfig"])


@KINDS
def test_a_function_tool_call_and_its_output_make_a_round_trip(client, gateway, upstreams, kind) -> None:
    upstreams[kind].tool_input = {"city": "Paris"}
    c = client(gateway)
    first = c.responses.create(model=MODELS[kind], input="Weather in Paris?", tools=[TOOL])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    follow_up = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
    ]
    second = c.responses.create(model=MODELS[kind], input=follow_up, tools=[TOOL], tool_choice="none")
    assert second.output_text == DEFAULT_TEXT
    sent = json.dumps(upstreams[kind].last_request.json)
    assert "Sunny, 21 C" in sent
    if kind == "anthropic":
        results = [b for m in json.loads(sent)["messages"] for b in m["content"] if isinstance(b, dict)]
        assert {"tool_use", "tool_result"} <= {b["type"] for b in results}
        assert call.call_id in sent


@KINDS
def test_a_streamed_tool_call_arrives_as_function_call_argument_events(
    client, gateway, upstreams, kind
) -> None:
    upstreams[kind].tool_input = {"city": "Lisbon"}
    with client(gateway).responses.stream(model=MODELS[kind], input="Weather?", tools=[TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    assert "response.function_call_arguments.done" in types
    [call] = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Lisbon"}


@KINDS
def test_a_stream_cut_after_its_first_byte_makes_the_sdk_raise_and_is_charged(
    client, gateway, upstreams, kind
) -> None:
    upstreams[kind].script([Fault.stream_truncate(after=4)])
    with (
        pytest.raises(openai.APIError, match="ended before it was complete"),
        client(gateway).responses.stream(model=MODELS[kind], input="hi") as stream,
    ):
        stream.get_final_response()
    entry = ledger_entries(gateway)[-1]
    assert entry["status"] == "upstream_stream_error"
    assert entry["costMicroUSD"] > 0


def test_the_error_event_ending_a_cut_stream_is_numbered_after_the_last_event(gateway, openai_up) -> None:
    openai_up.script([Fault.stream_reset(after=5)])
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/responses",
        json={"model": MODELS["openai"], "input": "hi", "stream": True},
    ) as reply:
        text = reply.read().decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    last = events[-1]
    assert last["type"] == "error" and last["code"] == "upstream_stream_error"
    assert last["error"]["message"] == last["message"]
    assert "event: error\n" in text and "response.completed" not in text


def test_an_upstream_error_event_mid_stream_reaches_the_client_without_key_material(
    client, gateway, openai_up
) -> None:
    openai_up.script([Fault.stream_error(after=4, message=f"boom with {OPENAI_KEY}")])
    with pytest.raises(openai.APIError) as raised:
        for _ in client(gateway).responses.create(model=MODELS["openai"], input="hi", stream=True):
            pass
    assert OPENAI_KEY not in str(raised.value) and "[redacted]" in str(raised.value)
    assert ledger_entries(gateway)[-1]["status"] == "upstream_stream_error"


def test_reasoning_items_and_reasoning_tokens_pass_through_and_are_charged_as_output(
    client, gateway, openai_up
) -> None:
    usage = FakeUsage(30, 40)
    openai_up.script([Fault.ok(usage=usage)])
    response = client(gateway).responses.create(
        model=MODELS["openai"], input="Think", reasoning={"effort": "low"}
    )
    assert response.output[0].type == "reasoning"
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    assert ledger_entries(gateway)[-1]["costMicroUSD"] == cost_of("openai", usage)


def test_max_output_tokens_reaches_the_upstream_and_an_incomplete_response_says_why(
    client, gateway, anthropic_up
) -> None:
    response = client(gateway).responses.create(model=MODELS["anthropic"], input="hi", max_output_tokens=3)
    assert anthropic_up.last_request.json["max_tokens"] == 3
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == " ".join(DEFAULT_TEXT.split()[:3])


@pytest.mark.parametrize("kind", ["anthropic", "gemini"])
def test_previous_response_id_is_refused_where_the_upstream_keeps_no_state(
    client, gateway, upstreams, kind
) -> None:
    before = len(upstreams[kind].requests)
    with pytest.raises(openai.BadRequestError, match="previous_response_id") as raised:
        client(gateway).responses.create(model=MODELS[kind], input="and then?", previous_response_id="resp_1")
    assert raised.value.status_code == 400
    assert len(upstreams[kind].requests) == before


def test_previous_response_id_and_store_pass_through_to_openai(client, gateway, openai_up) -> None:
    client(gateway).responses.create(
        model=MODELS["openai"], input="and then?", previous_response_id="resp_1", store=True
    )
    sent = openai_up.last_request.json
    assert sent["previous_response_id"] == "resp_1" and sent["store"] is True


def test_a_background_response_is_refused_because_it_could_not_be_metered(client, gateway, openai_up) -> None:
    with pytest.raises(openai.BadRequestError, match="background"):
        client(gateway).responses.create(model=MODELS["openai"], input="hi", background=True)
    assert openai_up.requests == []


def test_failing_candidates_fall_back_to_a_translated_one_before_the_first_byte(
    client, gateway, upstreams
) -> None:
    upstreams["gemini"].script([Fault.status(503)])  # the cheapest two candidates fail
    upstreams["openai"].script([Fault.status(503)])
    raw = client(gateway).responses.with_raw_response.create(model="tier:standard", input="hi", stream=True)
    events = list(raw.parse())
    assert events[-1].type == "response.completed" and events[-1].response.output_text == DEFAULT_TEXT
    assert raw.headers["x-sluicegate-fallbacks"].startswith("2;")
    assert raw.headers["x-sluicegate-routed-model"] == MODELS["anthropic"]
    assert raw.headers["x-sluicegate-tier"] == "standard"


def test_a_request_over_budget_is_refused_with_402_in_the_openai_envelope(
    client, sidecar_with, upstreams
) -> None:
    sc = sidecar_with(budget("tiny", 0.000001, action="BLOCK"))
    with pytest.raises(openai.APIStatusError) as raised:
        client(sc).responses.create(model=MODELS["openai"], input="hi " * 200)
    assert raised.value.status_code == 402
    assert raised.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert upstreams["openai"].requests == []


def test_a_budget_that_needs_a_cap_sends_it_as_max_output_tokens(client, sidecar_with, upstreams) -> None:
    sc = sidecar_with(budget("daily", 0.001))  # room for about 1,600 output tokens of gpt-4o-mini
    client(sc).responses.create(model=MODELS["openai"], input="hi")
    sent = upstreams["openai"].last_request.json
    assert 16 <= sent["max_output_tokens"] < 16_384  # clamped below the model's own limit
    assert "max_tokens" not in sent and "max_completion_tokens" not in sent


def test_a_budget_with_room_for_fewer_than_16_output_tokens_refuses_with_402_not_openais_400(
    client, sidecar_with, upstreams
) -> None:
    # Room for the prompt's bound and about 10 output tokens of gpt-4o-mini: OpenAI's Responses API
    # takes no max_output_tokens below 16, so clamping would only earn its 400.
    sc = sidecar_with(budget("daily", 0.0000085, action="BLOCK"))
    with pytest.raises(openai.APIStatusError) as raised:
        client(sc).responses.create(model=MODELS["openai"], input="hi")
    assert raised.value.status_code == 402
    assert raised.value.body["code"] == "budget_exceeded" and "daily" in raised.value.message  # type: ignore[index]
    assert upstreams["openai"].requests == []
    chat = client(sc).chat.completions.create(  # chat has no minimum: the same room is clamped
        model=MODELS["openai"], messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content
    assert 1 <= upstreams["openai"].last_request.json["max_completion_tokens"] < 16


def test_unknown_sub_paths_of_responses_are_404(gateway) -> None:
    reply = httpx.get(f"{gateway.base_url}/responses/resp_1")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "unknown_url"


def test_an_azure_connection_gets_the_v1_responses_url_with_the_deployment_as_model(client, tmp_path) -> None:
    with FakeAzureOpenAI(api_key="azure-secret-key-0004") as azure:
        config = render_dir(
            tmp_path / "config",
            [
                connection(
                    "azure",
                    "azure-openai",
                    ["gpt-4o-mini"],
                    base_url=azure.root_url,
                    key="azure-secret-key-0004",
                    azure={"apiVersion": "2024-10-21", "deployments": {"gpt-4o-mini": "prod-mini"}},
                ),
            ],
        )
        with SidecarThread(config, tmp_path / "ledger") as sc:
            usage = FakeUsage(50, 12)
            azure.script([Fault.ok(usage=usage)])
            raw = client(sc).responses.with_raw_response.create(model="azure/gpt-4o-mini", input="hi")
            assert raw.parse().output_text == DEFAULT_TEXT
            with client(sc).responses.stream(model="azure/gpt-4o-mini", input="hi") as stream:
                assert stream.get_final_response().output_text == DEFAULT_TEXT
            first = azure.requests[0]
            assert (first.path, first.query) == ("/openai/v1/responses", {})
            assert first.json["model"] == "prod-mini" and first.headers["api-key"] == "azure-secret-key-0004"
            assert ledger_entries(sc)[0]["usage"]["input"] == 50


def test_a_follow_up_without_input_passes_through_and_is_refused_clearly_where_state_is_missing(
    client, gateway, openai_up, anthropic_up
) -> None:
    client(gateway).responses.create(model=MODELS["openai"], previous_response_id="resp_1")
    assert openai_up.last_request.json["previous_response_id"] == "resp_1"
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        client(gateway).responses.create(model=MODELS["anthropic"], previous_response_id="resp_1")
    assert anthropic_up.requests == []


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_the_final_event_reaches_the_client_only_once_its_ledger_line_is_written(
    gateway, upstreams, kind
) -> None:
    upstreams[kind].script([Fault.stream_hang(after=1_000, seconds=0.5)])  # all events, then a slow close
    body = {"model": MODELS[kind], "input": "hi", "stream": True}
    with httpx.stream("POST", f"{gateway.base_url}/responses", json=body, timeout=10) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "response.completed":
                lines = ledger_lines(gateway.ledger_dir)  # read as it is on disk, nothing flushed
                break
        else:
            raise AssertionError("no response.completed")
    assert lines and lines[-1]["status"] == 200 and lines[-1]["connection"] == kind


def test_a_proxy_base_url_pins_the_provider_for_responses_too(gateway, anthropic_up) -> None:
    with OpenAI(base_url=f"{gateway.root_url}/v1/proxy/anthropic/v1", api_key=APP_KEY, max_retries=0) as c:
        raw = c.responses.with_raw_response.create(model=CLAUDE, input="hi")
    assert raw.headers["x-sluicegate-routed-model"] == MODELS["anthropic"]
    assert raw.parse().output_text == DEFAULT_TEXT and anthropic_up.last_request.path == "/v1/messages"
