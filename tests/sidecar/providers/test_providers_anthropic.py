from __future__ import annotations

import json

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from sluicegate_sidecar.providers.anthropic import AnthropicAdapter
from sluicegate_sidecar.providers.base import BadUpstreamResponse, Connection, UnsupportedOperation, Usage

ADAPTER = AnthropicAdapter()
CONN = Connection(name="claude", provider="anthropic", base_url="", api_key="sk-ant-api03-secret")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CHAT_REQUEST = {
    "model": "tier:premium",
    "messages": [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer briefly."}]},
        {"role": "user", "content": "What's the weather in Paris and Rome?"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Also, where is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "18C sunny"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "22C cloudy"}]},
        {"role": "user", "content": "Thanks! Which is warmer?"},
    ],
    "tools": [WEATHER_TOOL],
    "tool_choice": "required",
    "stop": ["\n\nHuman:"],
    "max_tokens": 512,
    "temperature": 0.3,
    "top_p": 0.9,
    "user": "u-42",
    "api_key": "sk-from-the-app",
}
EXPECTED_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 512,
    "system": "You are a travel agent.\n\nAnswer briefly.",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What's the weather in Paris and Rome?"},
                {"type": "text", "text": "Also, where is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "content": [{"type": "text", "text": "22C cloudy"}],
                },
                {"type": "text", "text": "Thanks! Which is warmer?"},
            ],
        },
    ],
    "stop_sequences": ["\n\nHuman:"],
    "temperature": 0.3,
    "top_p": 0.9,
    "tools": [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ],
    "tool_choice": {"type": "any"},
    "metadata": {"user_id": "u-42"},
}
REPLY = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 3000,
        "output_tokens": 40,
    },
}


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1000,
                "output_tokens": 1,
            },
        },
    },
)
STREAM_EVENTS = [
    START,
    sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    sse("ping", {"type": "ping"}),
    sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me"}},
    ),
    sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " check."}},
    ),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}},
        },
    ),
    sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
        },
    ),
    sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
        },
    ),
    sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 42},
        },
    ),
    sse("message_stop", {"type": "message_stop"}),
]
STREAM = b"".join(STREAM_EVENTS)


def run(relay, pieces: list[bytes]) -> bytes:
    return b"".join(relay.feed(piece) for piece in pieces) + relay.finish()


def chunks(out: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: {")]


def test_a_chat_request_becomes_a_messages_request():
    request = ADAPTER.build("chat", CONN, "claude-sonnet-4-5", CHAT_REQUEST, stream=False)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-api03-secret",
    }
    assert json.loads(request.body) == EXPECTED_BODY


def test_streams_ask_for_a_stream_and_the_base_url_can_be_overridden():
    conn = Connection(name="c", provider="anthropic", base_url="https://claude-proxy.internal/", api_key="k")
    request = ADAPTER.build(
        "chat", conn, "claude-haiku-4-5", {"messages": [{"role": "user", "content": "hi"}]}, stream=True
    )
    assert request.url == "https://claude-proxy.internal/v1/messages"
    body = json.loads(request.body)
    assert body["stream"] is True
    assert body["max_tokens"] == 4096  # Anthropic requires it; the default when the client gave none


def test_max_tokens_takes_the_smaller_of_both_caps():
    body = json.loads(
        ADAPTER.build(
            "chat", CONN, "m", {"messages": [], "max_tokens": 900, "max_completion_tokens": 300}, stream=False
        ).body
    )
    assert body["max_tokens"] == 300


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, None),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_maps_to_anthropic(choice, parallel, expected):
    request = {"messages": [], "tools": [WEATHER_TOOL], "tool_choice": choice}
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    body = json.loads(ADAPTER.build("chat", CONN, "m", request, stream=False).body)
    assert body.get("tool_choice") == expected


def test_json_mode_becomes_a_system_instruction():
    request = {
        "messages": [{"role": "user", "content": "List two colours"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "array"}}},
    }
    body = json.loads(ADAPTER.build("chat", CONN, "m", request, stream=False).body)
    assert "JSON" in body["system"] and '{"type":"array"}' in body["system"]


@pytest.mark.parametrize(
    "request_body",
    [
        {"messages": [], "n": 2},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}
            ]
        },
        {"messages": [{"role": "function", "name": "f", "content": "x"}]},
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{bad"}}],
                }
            ]
        },
        {"messages": [], "tools": [{"type": "web_search"}]},
    ],
)
def test_requests_anthropic_cannot_express_are_refused(request_body):
    with pytest.raises(UnsupportedOperation):
        ADAPTER.build("chat", CONN, "m", request_body, stream=False)


def test_completions_and_embeddings_are_not_served():
    for op in ("completions", "embeddings"):
        with pytest.raises(UnsupportedOperation):
            ADAPTER.build(op, CONN, "m", {}, stream=False)


def test_a_messages_reply_becomes_a_chat_completion_the_openai_sdk_accepts():
    reply = ADAPTER.parse("chat", "claude-sonnet-4-5", json.dumps(REPLY).encode())
    completion = ChatCompletion.model_validate_json(reply.body)
    message = completion.choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls[0].id == "toolu_01A"
    assert message.tool_calls[0].function.name == "get_weather"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls" == reply.finish_reason
    assert completion.usage.prompt_tokens == 5100
    assert completion.usage.completion_tokens == 40
    assert completion.usage.prompt_tokens_details.cached_tokens == 3000
    assert reply.usage == Usage(
        input_tokens=5100, output_tokens=40, cached_input_tokens=3000, cache_write_tokens=2000
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls")],
)
def test_stop_reasons_map_to_openai_finish_reasons(stop_reason, finish):
    body = {**REPLY, "stop_reason": stop_reason, "content": [{"type": "text", "text": "hi"}]}
    completion = json.loads(ADAPTER.parse("chat", "m", json.dumps(body).encode()).body)
    assert completion["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type":"message"}', b'{"content":[1,2]}'])
def test_a_reply_that_is_not_a_message_is_a_bad_upstream_response(body):
    with pytest.raises(BadUpstreamResponse):
        ADAPTER.parse("chat", "m", body)


def test_a_stream_becomes_openai_chunks_that_accumulate_to_the_answer():
    relay = ADAPTER.relay("chat", "claude", {"stream": True, "stream_options": {"include_usage": True}})
    out = run(relay, [STREAM])
    assert out.endswith(b"data: [DONE]\n\n")
    state = ChatCompletionStreamState()
    for payload in chunks(out):
        state.handle_chunk(ChatCompletionChunk.model_validate(payload))
    final = state.get_final_completion()
    assert final.choices[0].message.content == "Let me check."
    assert final.choices[0].message.tool_calls[0].id == "toolu_9"
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.prompt_tokens == 1025 and final.usage.completion_tokens == 42
    assert relay.completed
    assert relay.usage == Usage(1025, 42, 1000, 0)
    assert relay.output_chars == len("Let me check.") + len('{"city": "Paris"}')


def test_the_usage_chunk_is_sent_only_when_the_client_asked():
    out = run(ADAPTER.relay("chat", "claude", {"stream": True}), [STREAM])
    assert all(chunk["choices"] for chunk in chunks(out))
    asked = chunks(
        run(ADAPTER.relay("chat", "claude", {"stream_options": {"include_usage": True}}), [STREAM])
    )
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 1000


def test_stream_translation_is_the_same_however_the_bytes_are_split():
    expected = run(ADAPTER.relay("chat", "claude", {}), [STREAM])
    short = b"".join(STREAM_EVENTS[:5]) + STREAM_EVENTS[-2] + STREAM_EVENTS[-1]
    expected_short = run(ADAPTER.relay("chat", "claude", {}), [short])
    for cut in range(len(short) + 1):
        assert run(ADAPTER.relay("chat", "claude", {}), [short[:cut], short[cut:]]) == expected_short
    relay = ADAPTER.relay("chat", "claude", {})
    assert run(relay, [STREAM[i : i + 7] for i in range(0, len(STREAM), 7)]) == expected
    assert relay.completed


def test_a_stream_without_message_stop_is_not_completed_and_has_no_done():
    relay = ADAPTER.relay("chat", "claude", {"stream": True})
    out = run(relay, [b"".join(STREAM_EVENTS[:-1])])
    assert b"[DONE]" not in out
    assert not relay.completed
    assert relay.usage == Usage(1025, 42, 1000, 0)


def test_an_error_event_ends_the_translation_without_a_clean_end():
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    relay = ADAPTER.relay("chat", "claude", {"stream": True})
    out = run(relay, [b"".join(STREAM_EVENTS[:4]), error, STREAM_EVENTS[-1]])
    assert b"Overloaded" not in out and b"[DONE]" not in out
    assert not relay.completed
    assert relay.error is not None and (relay.error.message, relay.error.code) == (
        "Overloaded",
        "overloaded_error",
    )


def test_native_messages_requests_pass_through_with_the_model_replaced():
    client = {
        "model": "claude-latest",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
        "base_url": "https://evil.example",
    }
    request = ADAPTER.build("messages", CONN, "claude-opus-4-1", client, stream=True)
    body = json.loads(request.body)
    expected = {k: v for k, v in client.items() if k != "base_url"} | {
        "model": "claude-opus-4-1",
        "stream": True,
    }
    assert body == expected


def test_native_messages_replies_and_streams_pass_through_unchanged():
    raw = json.dumps(REPLY).encode()
    reply = ADAPTER.parse("messages", "m", raw)
    assert reply.body is raw
    assert reply.usage == Usage(5100, 40, 3000, 2000)
    relay = ADAPTER.relay("messages", "m", {"stream": True})
    assert run(relay, [STREAM[:100], STREAM[100:]]) == STREAM
    assert relay.completed
    assert relay.usage == Usage(1025, 42, 1000, 0)


def test_message_delta_usage_with_input_fields_overrides_the_start():
    delta = sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {
                "input_tokens": 30,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 5,
                "output_tokens": 9,
            },
        },
    )
    relay = ADAPTER.relay("messages", "m", {})
    run(relay, [START, delta, STREAM_EVENTS[-1]])
    assert relay.usage == Usage(1035, 9, 1000, 5)


def test_errors_map_to_openai_types_and_hide_auth_details():
    auth = b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}'
    assert ADAPTER.parse_error(401, auth).message == "upstream rejected the provider credentials"
    overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    info = ADAPTER.parse_error(529, overloaded)
    assert (info.type, info.code, info.message) == ("api_error", "overloaded_error", "Overloaded")
    limited = ADAPTER.parse_error(
        429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    )
    assert limited.type == "rate_limit_error"
    invalid = ADAPTER.parse_error(
        400, b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
    )
    assert invalid.type == "invalid_request_error"
    assert ADAPTER.parse_error(500, b"<html>").message == "upstream returned HTTP 500"


def test_the_clients_beta_and_version_headers_are_forwarded_only_when_well_formed():
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    sent = {"anthropic-beta": "a-2025-01-01, b-2025-02-02", "anthropic-version": "2024-01-01"}
    headers = ADAPTER.build("messages", CONN, "m", body, stream=False, client_headers=sent).headers
    assert headers["anthropic-beta"] == "a-2025-01-01, b-2025-02-02"
    assert headers["anthropic-version"] == "2024-01-01"
    bad = {"anthropic-beta": "x\r\nx-api-key: stolen", "anthropic-version": "latest"}
    headers = ADAPTER.build("messages", CONN, "m", body, stream=False, client_headers=bad).headers
    assert "anthropic-beta" not in headers and headers["anthropic-version"] == "2023-06-01"
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    translated = ADAPTER.build("chat", CONN, "m", chat, stream=False, client_headers=sent).headers
    assert translated["anthropic-version"] == "2023-06-01"  # the translation is written for it
    assert translated["anthropic-beta"] == sent["anthropic-beta"]


def test_count_tokens_goes_to_its_own_path_without_a_stream_field_and_reads_the_count():
    body = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "api_key": "sk-client"}
    request = ADAPTER.build("count_tokens", CONN, "claude-haiku-4-5", body, stream=False)
    assert request.url.endswith("/v1/messages/count_tokens")
    assert json.loads(request.body) == {"model": "claude-haiku-4-5", "messages": body["messages"]}
    reply = ADAPTER.parse("count_tokens", "claude-haiku-4-5", b'{"input_tokens": 12}')
    assert reply.body == b'{"input_tokens": 12}' and reply.usage is None
    with pytest.raises(BadUpstreamResponse):
        ADAPTER.parse("count_tokens", "claude-haiku-4-5", b'{"tokens": "many"}')
