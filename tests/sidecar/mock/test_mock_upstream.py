"""The built-in mock provider answers like OpenAI (and like Anthropic on Messages: test_mock_messages),
deterministically, with its configured faults; it calls offered tools, follows requested JSON schemas
and returns logprobs when asked."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from sluicegate_contract.schema import MockSettings
from sluicegate_sidecar.mock.transport import MockUpstreamTransport

BASE_URL = "http://mock.sluicegate.invalid/v1"
CHAT = {"model": "mock-small", "messages": [{"role": "user", "content": "Tell me about budgets."}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string"},
            },
            "required": ["city", "days"],
        },
    },
}


def fixed_clock() -> float:
    return 1_750_000_000.0


def client(settings: MockSettings | None = None, seed: int = 0) -> httpx.AsyncClient:
    transport = MockUpstreamTransport(settings or MockSettings(), seed, clock=fixed_clock)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


@pytest.fixture
async def mock() -> AsyncIterator[httpx.AsyncClient]:
    async with client() as c:
        yield c


async def post_stream(c: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[str]:
    """The `data:` payloads of an SSE reply, in order."""
    async with c.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    assert text.endswith("\n\n")
    return [frame.removeprefix("data: ") for frame in text.split("\n\n") if frame]


def count_tokens(text: str) -> int:
    """The mock's tokens are words (with their leading space) and punctuation marks."""
    return len(re.findall(r" ?[A-Za-z]+|\.", text))


async def test_chat_completion_parses_with_the_openai_types_and_usage_matches_the_content(mock):
    response = await mock.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    completion = ChatCompletion.model_validate_json(response.content)
    choice = completion.choices[0]
    assert completion.object == "chat.completion" and completion.model == "mock-small"
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert re.fullmatch(r"[A-Z][a-z]*( [a-z]+)*\.( [A-Z][a-z]*( [a-z]+)*\.)*", choice.message.content)
    usage = completion.usage
    assert usage.completion_tokens == count_tokens(choice.message.content)
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0


async def test_a_longer_prompt_reports_more_prompt_tokens(mock):
    short = await mock.post("/chat/completions", json=CHAT)
    long_chat = CHAT | {"messages": [{"role": "user", "content": "budget " * 400}]}
    long = await mock.post("/chat/completions", json=long_chat)
    assert long.json()["usage"]["prompt_tokens"] > short.json()["usage"]["prompt_tokens"] + 500


async def test_stream_with_include_usage_ends_like_openai(mock):
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    frames = await post_stream(mock, "/chat/completions", body)
    assert frames[-1] == "[DONE]"
    raw = [json.loads(f) for f in frames[:-1]]
    assert all("usage" in chunk for chunk in raw)
    assert all(chunk["usage"] is None for chunk in raw[:-1])
    chunks = [ChatCompletionChunk.model_validate_json(f) for f in frames[:-1]]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    content = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"
    assert last.usage.completion_tokens == count_tokens(content) == len(chunks) - 3
    plain = ChatCompletion.model_validate_json((await mock.post("/chat/completions", json=CHAT)).content)
    assert content == plain.choices[0].message.content
    assert last.usage == plain.usage


async def test_stream_without_include_usage_sends_no_usage(mock):
    frames = await post_stream(mock, "/chat/completions", CHAT | {"stream": True})
    assert frames[-1] == "[DONE]"
    assert all("usage" not in json.loads(f) and json.loads(f)["choices"] for f in frames[:-1])


async def test_stream_options_without_stream_is_rejected_like_openai(mock):
    response = await mock.post("/chat/completions", json=CHAT | {"stream_options": {"include_usage": True}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream_options"


async def test_the_same_request_gets_the_same_bytes_and_another_seed_other_text():
    async with client(seed=7) as first, client(seed=7) as second, client(seed=8) as other:
        a = await first.post("/chat/completions", json=CHAT)
        b = await second.post("/chat/completions", json=CHAT)
        c = await other.post("/chat/completions", json=CHAT)
        d = await first.post(
            "/chat/completions", json=CHAT | {"messages": [{"role": "user", "content": "Hi"}]}
        )
    assert a.content == b.content
    text = a.json()["choices"][0]["message"]["content"]
    assert c.json()["choices"][0]["message"]["content"] != text
    assert d.json()["choices"][0]["message"]["content"] != text


async def test_max_tokens_bounds_the_completion_and_reports_length(mock):
    for field in ("max_tokens", "max_completion_tokens"):
        completion = (await mock.post("/chat/completions", json=CHAT | {field: 5})).json()
        choice = completion["choices"][0]
        assert choice["finish_reason"] == "length"
        assert completion["usage"]["completion_tokens"] == count_tokens(choice["message"]["content"]) == 5


async def test_a_generous_max_tokens_leaves_the_natural_length_of_about_sixty_tokens(mock):
    lengths = []
    for i in range(20):
        body = CHAT | {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 4000}
        completion = (await mock.post("/chat/completions", json=body)).json()
        assert completion["choices"][0]["finish_reason"] == "stop"
        assert completion["choices"][0]["message"]["content"].endswith(".")
        lengths.append(completion["usage"]["completion_tokens"])
    assert min(lengths) >= 30 and max(lengths) <= 100
    assert 45 <= sum(lengths) / len(lengths) <= 75


async def test_n_choices_are_distinct_and_all_counted(mock):
    completion = ChatCompletion.model_validate_json(
        (await mock.post("/chat/completions", json=CHAT | {"n": 3})).content
    )
    texts = [c.message.content for c in completion.choices]
    assert [c.index for c in completion.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert completion.usage.completion_tokens == sum(count_tokens(t) for t in texts)
    frames = await post_stream(mock, "/chat/completions", CHAT | {"n": 3, "stream": True})
    streamed = ["", "", ""]
    for frame in frames[:-1]:
        for choice in ChatCompletionChunk.model_validate_json(frame).choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == texts


async def test_a_forced_tool_call_fills_the_required_arguments_from_the_schema(mock):
    body = CHAT | {"tools": [WEATHER_TOOL], "tool_choice": "required"}
    completion = ChatCompletion.model_validate_json((await mock.post("/chat/completions", json=body)).content)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert list(arguments) == ["city", "days"]
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    frames = await post_stream(mock, "/chat/completions", body | {"stream": True})
    chunks = [ChatCompletionChunk.model_validate_json(f) for f in frames[:-1]]
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == call.id and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_named_tool_choice_without_properties_gets_empty_arguments(mock):
    tool = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}
    choice = {"type": "function", "function": {"name": "ping"}}
    completion = (
        await mock.post("/chat/completions", json=CHAT | {"tools": [tool], "tool_choice": choice})
    ).json()
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "ping",
        "arguments": "{}",
    }


async def test_tools_offered_after_a_user_turn_get_a_call_to_the_first_tool(mock):
    # An agent loop's first step: the model calls a tool when it has one (issue 15: agents offline)
    completion = (await mock.post("/chat/completions", json=CHAT | {"tools": [WEATHER_TOOL]})).json()
    message = completion["choices"][0]["message"]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"


async def test_after_a_tool_result_or_with_tool_choice_none_the_answer_is_text(mock):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    after = CHAT["messages"] + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ]
    for body in (
        CHAT | {"messages": after, "tools": [WEATHER_TOOL]},
        CHAT | {"tools": [WEATHER_TOOL], "tool_choice": "none"},
    ):
        completion = (await mock.post("/chat/completions", json=body)).json()
        assert completion["choices"][0]["finish_reason"] == "stop"
        assert completion["choices"][0]["message"]["content"]
        assert "tool_calls" not in completion["choices"][0]["message"]


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "role": {"enum": ["admin", "user"]},
        "address": {"$ref": "#/$defs/Address"},
        "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["name", "age", "email", "tags", "role", "address", "nickname"],
    "additionalProperties": False,
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string", "minLength": 5}},
            "required": ["city", "zip"],
        }
    },
}


async def test_a_json_schema_response_format_gets_json_valid_under_the_schema(mock):
    import jsonschema

    body = CHAT | {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}}
    completion = (await mock.post("/chat/completions", json=body)).json()
    value = json.loads(completion["choices"][0]["message"]["content"])
    jsonschema.validate(value, PERSON)
    frames = await post_stream(mock, "/chat/completions", body | {"stream": True})
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in (ChatCompletionChunk.model_validate_json(f) for f in frames[:-1])
        if c.choices
    )
    assert json.loads(streamed) == value
    plain = (
        await mock.post("/chat/completions", json=CHAT | {"response_format": {"type": "json_object"}})
    ).json()
    assert isinstance(json.loads(plain["choices"][0]["message"]["content"]), dict)


async def test_logprobs_are_returned_per_token_when_asked(mock):
    body = CHAT | {"logprobs": True, "top_logprobs": 3, "max_tokens": 12}
    completion = ChatCompletion.model_validate_json((await mock.post("/chat/completions", json=body)).content)
    choice = completion.choices[0]
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content and len(entries) == 12
    assert all(
        e.logprob <= 0 and len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token for e in entries
    )
    frames = await post_stream(mock, "/chat/completions", body | {"stream": True})
    streamed = [
        e
        for c in (ChatCompletionChunk.model_validate_json(f) for f in frames[:-1])
        for ch in c.choices
        if ch.logprobs
        for e in ch.logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in entries]
    without = (await mock.post("/chat/completions", json=CHAT)).json()
    assert without["choices"][0]["logprobs"] is None


async def test_legacy_completions_answer_and_stream(mock):
    body = {"model": "mock-small", "prompt": "Once upon a time", "max_tokens": 12}
    completion = Completion.model_validate_json((await mock.post("/completions", json=body)).content)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 12 == count_tokens(completion.choices[0].text)
    frames = await post_stream(
        mock, "/completions", body | {"stream": True, "stream_options": {"include_usage": True}}
    )
    # Streamed text-completion chunks carry finish_reason null, which only the stream parser accepts.
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == completion.choices[0].text
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == completion.usage.model_dump(
        exclude_none=True
    )


async def test_embeddings_are_deterministic_unit_vectors(mock):
    body = {"model": "mock-embedding", "input": ["alpha", "beta"]}
    response = CreateEmbeddingResponse.model_validate_json(
        (await mock.post("/embeddings", json=body)).content
    )
    vectors = [d.embedding for d in response.data]
    assert [len(v) for v in vectors] == [8, 8] and vectors[0] != vectors[1]
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-9) for v in vectors)
    assert response.usage.prompt_tokens == response.usage.total_tokens == 2 + 1  # ~4 characters a token
    again = (await mock.post("/embeddings", json={"model": "mock-embedding", "input": "alpha"})).json()
    assert again["data"][0]["embedding"] == vectors[0]
    wide = (await mock.post("/embeddings", json=body | {"dimensions": 32})).json()
    assert len(wide["data"][0]["embedding"]) == 32


async def test_the_openai_sdk_works_end_to_end_over_the_transport():
    async with client() as http:
        sdk = openai.AsyncOpenAI(base_url=BASE_URL, api_key="unused", http_client=http, max_retries=0)
        completion = await sdk.chat.completions.create(model="mock-small", messages=CHAT["messages"])
        stream = await sdk.chat.completions.create(
            model="mock-small", messages=CHAT["messages"], stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        embedding = await sdk.embeddings.create(model="mock-embedding", input="alpha", dimensions=4)  # base64
        models = [m.id async for m in sdk.models.list()]
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == completion.choices[0].message.content
    )
    assert chunks[-1].usage == completion.usage
    assert len(embedding.data[0].embedding) == 4
    assert math.isclose(math.fsum(x * x for x in embedding.data[0].embedding), 1.0, rel_tol=1e-6)
    assert models == ["mock-small", "mock-large", "mock-embedding"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/chat/completions", b"{not json", None),
        ("/chat/completions", b"[1, 2]", None),
        ("/chat/completions", json.dumps({"messages": CHAT["messages"]}).encode(), "model"),
        ("/chat/completions", json.dumps({"model": "m", "messages": []}).encode(), "messages"),
        ("/chat/completions", json.dumps(CHAT | {"max_tokens": 0}).encode(), "max_tokens"),
        ("/chat/completions", json.dumps(CHAT | {"n": 1000}).encode(), "n"),
        ("/chat/completions", json.dumps(CHAT | {"stream": "yes"}).encode(), "stream"),
        ("/completions", json.dumps({"model": "m"}).encode(), "prompt"),
        ("/embeddings", json.dumps({"model": "m", "input": [1.5]}).encode(), "input"),
    ],
)
async def test_bad_requests_get_an_openai_400(mock, path, body, param):
    response = await mock.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}


async def test_unknown_paths_get_an_openai_404(mock):
    response = await mock.post("/images/generations", json={})
    assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"


async def test_failure_rate_is_roughly_honoured_and_repeatable():
    settings = MockSettings(failure_rate=0.3, seed=42)

    async def statuses() -> list[int]:
        async with client(settings) as c:
            return [(await c.post("/chat/completions", json=CHAT)).status_code for _ in range(200)]

    first = await statuses()
    failures = [s for s in first if s != 200]
    assert 40 <= len(failures) <= 80
    assert set(failures) == {500, 503}
    assert await statuses() == first
    async with client(settings) as c:
        while (response := await c.post("/chat/completions", json=CHAT)).status_code == 200:
            pass
    assert response.json()["error"]["type"] == "server_error"


async def test_no_failures_at_rate_zero_all_at_rate_one_and_bad_requests_stay_400():
    async with (
        client(MockSettings(failure_rate=0.0)) as never,
        client(MockSettings(failure_rate=1.0)) as always,
    ):
        fine = {(await never.post("/chat/completions", json=CHAT)).status_code for _ in range(50)}
        failed = {(await always.post("/chat/completions", json=CHAT)).status_code for _ in range(50)}
        bad = await always.post("/chat/completions", json={"model": "mock-small"})
    assert fine == {200} and failed <= {500, 503}
    assert bad.status_code == 400


async def test_latency_delays_the_response():
    async with client(MockSettings(latency_ms=60)) as c:
        started = time.monotonic()
        response = await c.post("/chat/completions", json=CHAT)
        assert time.monotonic() - started >= 0.055
    assert response.status_code == 200


async def test_streams_arrive_in_chunks_spaced_by_the_chunk_delay():
    async with client(MockSettings(stream_chunk_delay_ms=20)) as c:
        body = CHAT | {"stream": True, "max_tokens": 4}
        async with c.stream("POST", "/chat/completions", json=body) as response:
            started = time.monotonic()
            pieces = [piece async for piece in response.aiter_raw()]
            elapsed = time.monotonic() - started
    # role chunk, 4 tokens, finish chunk, [DONE]: 7 pieces with 6 delays between them.
    assert len(pieces) == 7 and pieces[-1] == b"data: [DONE]\n\n"
    assert elapsed >= 6 * 0.02 * 0.95
