from __future__ import annotations

import json

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from sluicegate_sidecar.providers.base import BadUpstreamResponse, Connection, UnsupportedOperation, Usage
from sluicegate_sidecar.providers.gemini import GeminiAdapter

ADAPTER = GeminiAdapter()
KEY = "AIzaSyD-example-key-0123456789"
CONN = Connection(name="gemini", provider="gemini", base_url="", api_key=KEY)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CHAT_REQUEST = {
    "model": "auto",
    "messages": [
        {"role": "system", "content": "You are a travel agent."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What's the weather in Paris? And where is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/photos/cat.JPG?size=large"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": '{"temp_c": 18}'},
        {"role": "tool", "tool_call_id": "call_1", "content": "14:00"},
        {"role": "user", "content": "Thanks!"},
    ],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "stop": "END",
    "max_completion_tokens": 512,
    "temperature": 0.3,
    "top_p": 0.9,
    "n": 2,
    "response_format": {"type": "json_object"},
}
EXPECTED_BODY = {
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "What's the weather in Paris? And where is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {
                    "fileData": {
                        "fileUri": "https://example.com/photos/cat.JPG?size=large",
                        "mimeType": "image/jpeg",
                    }
                },
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "14:00"}}},
                {"text": "Thanks!"},
            ],
        },
    ],
    "systemInstruction": {"parts": [{"text": "You are a travel agent."}]},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],
                }
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {
        "maxOutputTokens": 512,
        "temperature": 0.3,
        "topP": 0.9,
        "candidateCount": 2,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
    },
}
USAGE_METADATA = {
    "promptTokenCount": 1200,
    "candidatesTokenCount": 30,
    "thoughtsTokenCount": 50,
    "cachedContentTokenCount": 1024,
    "totalTokenCount": 1280,
}
REPLY = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "thinking about it", "thought": True},
                    {"text": "Let me check.", "thoughtSignature": "c2ln"},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": USAGE_METADATA,
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-1",
}


def event(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"


def candidate(parts: list[dict], finish: str | None = None) -> dict:
    result = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        result["finishReason"] = finish
    return result


STREAM_EVENTS = [
    event(
        {
            "candidates": [candidate([{"text": "Hello"}])],
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "r1",
        }
    ),
    event(
        {
            "candidates": [candidate([{"text": " world"}])],
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 10},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "r1",
        }
    ),
    event(
        {
            "candidates": [
                candidate([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}], "STOP")
            ],
            "usageMetadata": {
                "promptTokenCount": 8,
                "candidatesTokenCount": 12,
                "thoughtsTokenCount": 20,
                "cachedContentTokenCount": 4,
                "totalTokenCount": 40,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "r1",
        }
    ),
]
STREAM = b"".join(STREAM_EVENTS)


def run(relay, pieces: list[bytes]) -> bytes:
    return b"".join(relay.feed(piece) for piece in pieces) + relay.finish()


def chunks(out: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: {")]


def test_a_chat_request_becomes_a_generate_content_request():
    request = ADAPTER.build("chat", CONN, "gemini-2.5-flash", CHAT_REQUEST, stream=False)
    assert (
        request.url
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert request.headers == {"Content-Type": "application/json", "x-goog-api-key": KEY}
    assert json.loads(request.body) == EXPECTED_BODY


def test_streams_use_stream_generate_content_with_sse():
    request = ADAPTER.build("chat", CONN, "models/gemini-2.5-pro", {"messages": []}, stream=True)
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )


@pytest.mark.parametrize(("op", "stream"), [("chat", False), ("chat", True), ("embeddings", False)])
def test_the_key_is_never_in_the_url(op, stream):
    request = ADAPTER.build(op, CONN, "gemini-2.5-flash", {"messages": [], "input": "x"}, stream=stream)
    assert KEY not in request.url and "key=" not in request.url
    assert request.headers["x-goog-api-key"] == KEY


@pytest.mark.parametrize(
    "model", ["../v1/files", "gemini?key=x", "gemini#x", "a/b", "gemini..pro", "", "models/"]
)
def test_model_names_that_could_change_the_url_are_refused(model):
    with pytest.raises(UnsupportedOperation):
        ADAPTER.build("chat", CONN, model, {"messages": []}, stream=False)


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
    ],
)
def test_tool_choice_maps_to_function_calling_modes(choice, config):
    request = {"messages": [], "tools": [WEATHER_TOOL], "tool_choice": choice}
    body = json.loads(ADAPTER.build("chat", CONN, "gemini-2.5-flash", request, stream=False).body)
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_a_json_schema_response_format_is_sent_as_a_response_json_schema():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = {
        "messages": [],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    }
    config = json.loads(ADAPTER.build("chat", CONN, "gemini-2.5-flash", request, stream=False).body)[
        "generationConfig"
    ]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_a_tool_result_for_an_unknown_call_is_refused():
    request = {"messages": [{"role": "tool", "tool_call_id": "call_9", "content": "x"}]}
    with pytest.raises(UnsupportedOperation, match="tool_call_id"):
        ADAPTER.build("chat", CONN, "gemini-2.5-flash", request, stream=False)


def test_completions_and_messages_are_not_served():
    for op in ("completions", "messages"):
        with pytest.raises(UnsupportedOperation):
            ADAPTER.build(op, CONN, "gemini-2.5-flash", {}, stream=False)


def test_a_reply_becomes_a_chat_completion_the_openai_sdk_accepts():
    reply = ADAPTER.parse("chat", "gemini-2.5-flash", json.dumps(REPLY).encode())
    completion = ChatCompletion.model_validate_json(reply.body)
    message = completion.choices[0].message
    assert message.content == "Let me check."  # thought summaries are not part of the answer
    assert message.tool_calls[0].id == "call_0"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls" == reply.finish_reason
    assert completion.model == "gemini-2.5-flash" and completion.id == "resp-1"
    assert reply.usage == Usage(
        input_tokens=1200, output_tokens=80, cached_input_tokens=1024, reasoning_tokens=50
    )
    assert completion.usage.prompt_tokens_details.cached_tokens == 1024


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons_map_to_openai(reason, finish):
    body = {"candidates": [candidate([{"text": "x"}], reason)], "usageMetadata": USAGE_METADATA}
    completion = json.loads(ADAPTER.parse("chat", "m", json.dumps(body).encode()).body)
    assert completion["choices"][0]["finish_reason"] == finish


def test_every_candidate_becomes_a_choice():
    body = {
        "candidates": [
            candidate([{"text": "a"}], "STOP"),
            {**candidate([{"text": "b"}], "MAX_TOKENS"), "index": 1},
        ]
    }
    completion = ChatCompletion.model_validate_json(
        ADAPTER.parse("chat", "m", json.dumps(body).encode()).body
    )
    assert [(c.index, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_a_blocked_prompt_is_a_content_filter_finish():
    body = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    reply = ADAPTER.parse("chat", "m", json.dumps(body).encode())
    assert reply.finish_reason == "content_filter"
    assert reply.usage == Usage(7, 0)


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"usageMetadata":{}}', b'{"candidates":[1]}'])
def test_a_reply_that_is_not_generate_content_is_a_bad_upstream_response(body):
    with pytest.raises(BadUpstreamResponse):
        ADAPTER.parse("chat", "m", body)


def test_a_stream_becomes_openai_chunks_that_accumulate_to_the_answer():
    relay = ADAPTER.relay(
        "chat", "gemini-2.5-flash", {"stream": True, "stream_options": {"include_usage": True}}
    )
    out = run(relay, [STREAM])
    assert out.endswith(b"data: [DONE]\n\n")
    state = ChatCompletionStreamState()
    for payload in chunks(out):
        state.handle_chunk(ChatCompletionChunk.model_validate(payload))
    final = state.get_final_completion()
    assert final.choices[0].message.content == "Hello world"
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.prompt_tokens == 8 and final.usage.completion_tokens == 32
    assert relay.completed
    assert relay.usage == Usage(8, 32, 4, reasoning_tokens=20)
    assert relay.output_chars == len("Hello world") + len('{"city":"Paris"}')


def test_the_usage_chunk_is_sent_only_when_the_client_asked():
    out = chunks(run(ADAPTER.relay("chat", "m", {"stream": True}), [STREAM]))
    assert all(chunk["choices"] for chunk in out)


def test_stream_translation_is_the_same_however_the_bytes_are_split():
    expected = run(ADAPTER.relay("chat", "m", {}), [STREAM])
    for cut in range(len(STREAM) + 1):
        relay = ADAPTER.relay("chat", "m", {})
        assert run(relay, [STREAM[:cut], STREAM[cut:]]) == expected
        assert relay.completed


def test_a_stream_that_stops_before_a_finish_reason_is_not_completed():
    relay = ADAPTER.relay("chat", "m", {"stream": True})
    out = run(relay, [b"".join(STREAM_EVENTS[:2])])
    assert b"[DONE]" not in out
    assert not relay.completed
    assert relay.usage == Usage(8, 0)


def test_an_error_event_mid_stream_is_not_a_clean_end():
    error = event({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    relay = ADAPTER.relay("chat", "m", {"stream": True})
    out = run(relay, [STREAM_EVENTS[0], error])
    assert b"overloaded" not in out and b"[DONE]" not in out
    assert not relay.completed
    assert relay.error is not None and relay.error.code == "UNAVAILABLE"


def test_embeddings_go_to_batch_embed_contents_and_come_back_as_an_openai_list():
    request = ADAPTER.build(
        "embeddings", CONN, "gemini-embedding-001", {"input": ["a", "b"], "dimensions": 3}, stream=False
    )
    assert request.url.endswith("/v1beta/models/gemini-embedding-001:batchEmbedContents")
    assert json.loads(request.body) == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 3,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 3,
            },
        ]
    }
    body = b'{"embeddings":[{"values":[0.1,0.2,0.3]},{"values":[0.4,0.5,0.6]}]}'
    reply = ADAPTER.parse("embeddings", "gemini-embedding-001", body)
    listing = CreateEmbeddingResponse.model_validate_json(reply.body)
    assert [item.embedding for item in listing.data] == [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
    assert reply.usage is None


def test_token_array_embedding_inputs_are_refused():
    with pytest.raises(UnsupportedOperation):
        ADAPTER.build("embeddings", CONN, "gemini-embedding-001", {"input": [[1, 2, 3]]}, stream=False)


def test_an_invalid_key_reported_as_400_is_still_a_generic_auth_error():
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
                ],
            }
        }
    ).encode()
    info = ADAPTER.parse_error(400, body)
    assert info.type == "authentication_error"
    assert info.message == "upstream rejected the provider credentials"


def test_gemini_errors_keep_their_message_and_status_code():
    quota = b'[{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}]'
    info = ADAPTER.parse_error(429, quota)
    assert (info.type, info.code, info.message) == (
        "rate_limit_error",
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted",
    )
    bad = b'{"error":{"code":400,"message":"Invalid JSON payload","status":"INVALID_ARGUMENT"}}'
    assert ADAPTER.parse_error(400, bad).type == "invalid_request_error"
