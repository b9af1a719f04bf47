from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletionChunk

from sluicegate_sidecar.providers.base import BadUpstreamResponse, Connection, UnsupportedOperation, Usage
from sluicegate_sidecar.providers.openai import OpenAIAdapter

ADAPTER = OpenAIAdapter()
CONN = Connection(
    name="prod-openai", provider="openai", base_url="https://api.openai.com/v1/", api_key="sk-live"
)


def chunk(delta: dict | None = None, finish: str | None = None, *, usage: dict | None = None) -> bytes:
    body = {
        "id": "chatcmpl-9x",
        "object": "chat.completion.chunk",
        "created": 1732300000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 7,
    "total_tokens": 1207,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
STREAM_EVENTS = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Hello"}),
    b": keep-alive\n\n",
    chunk({"content": ", wörld"}),
    chunk({}, "stop"),
    chunk(usage=USAGE),
    b"data: [DONE]\n\n",
]
STREAM = b"".join(STREAM_EVENTS)


def run(relay, pieces: list[bytes]) -> bytes:
    return b"".join(relay.feed(piece) for piece in pieces) + relay.finish()


def body_of(request) -> dict:
    return json.loads(request.body)


def test_chat_request_goes_to_chat_completions_with_the_connection_key():
    request = ADAPTER.build("chat", CONN, "gpt-4o-mini", {"model": "fast", "messages": []}, stream=False)
    assert request.method == "POST"
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers == {"Content-Type": "application/json", "Authorization": "Bearer sk-live"}
    assert body_of(request) == {"model": "gpt-4o-mini", "messages": []}


@pytest.mark.parametrize(("op", "path"), [("completions", "/completions"), ("embeddings", "/embeddings")])
def test_other_operations_use_their_own_paths(op, path):
    request = ADAPTER.build(op, CONN, "m", {"model": "x", "input": "hi"}, stream=False)
    assert request.url == "https://api.openai.com/v1" + path


def test_client_fields_that_could_steer_the_upstream_or_its_key_are_removed():
    client = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "api_base": "https://evil.example",
        "base_url": "https://evil.example",
        "api_key": "sk-theirs",
        "api_version": "2024-01-01",
        "extra_headers": {"Authorization": "Bearer x"},
        "custom_llm_provider": "openai",
        "litellm_params": {"api_base": "https://evil.example"},
        "temperature": 0.2,
        "user": "u-1",
    }
    body = body_of(ADAPTER.build("chat", CONN, "gpt-4o", client, stream=False))
    assert body == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "user": "u-1",
    }


def test_streams_always_ask_the_upstream_for_usage():
    client = {"model": "x", "messages": [], "stream": True, "stream_options": {"include_obfuscation": False}}
    body = body_of(ADAPTER.build("chat", CONN, "gpt-4o", client, stream=True))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_a_non_streamed_request_carries_no_stream_options():
    client = {"model": "x", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    body = body_of(ADAPTER.build("chat", CONN, "gpt-4o", client, stream=False))
    assert body["stream"] is False
    assert "stream_options" not in body


def test_openai_has_no_messages_endpoint():
    with pytest.raises(UnsupportedOperation):
        ADAPTER.build("messages", CONN, "gpt-4o", {"messages": []}, stream=False)


def test_a_reply_is_returned_byte_for_byte_with_its_usage():
    body = json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1732300000,
            "model": "gpt-4o",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}
            ],
            "usage": USAGE,
        },
        indent=2,
    ).encode()
    reply = ADAPTER.parse("chat", "gpt-4o", body)
    assert reply.body is body
    assert reply.usage == Usage(input_tokens=1200, output_tokens=7, cached_input_tokens=1024)
    assert reply.finish_reason == "length"


def test_explicit_zero_usage_is_zero_and_missing_usage_is_none():
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert ADAPTER.parse("chat", "m", json.dumps({"choices": [], "usage": zero}).encode()).usage == Usage(
        0, 0
    )
    assert ADAPTER.parse("chat", "m", b'{"choices": []}').usage is None


def test_embeddings_reply_usage_counts_prompt_tokens():
    body = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"m",'
    body += b'"usage":{"prompt_tokens":5,"total_tokens":5}}'
    reply = ADAPTER.parse("embeddings", "m", body)
    assert reply.body is body
    assert reply.usage == Usage(5, 0)


@pytest.mark.parametrize(
    "body", [b"<html>502 Bad Gateway</html>", b"[]", b'{"object":"list"}', b'{"choices": "many"}', b""]
)
def test_a_2xx_body_that_is_not_a_completion_is_a_bad_upstream_response(body):
    with pytest.raises(BadUpstreamResponse):
        ADAPTER.parse("chat", "gpt-4o", body)
    with pytest.raises(BadUpstreamResponse):
        ADAPTER.parse("embeddings", "gpt-4o", body)


def test_a_stream_passes_through_unchanged_when_the_client_asked_for_usage():
    relay = ADAPTER.relay("chat", "gpt-4o", {"stream": True, "stream_options": {"include_usage": True}})
    assert run(relay, [STREAM]) == STREAM
    assert relay.completed
    assert relay.usage == Usage(1200, 7, 1024)
    assert relay.output_chars == len("Hello, wörld")


def test_the_usage_only_chunk_is_dropped_when_the_client_did_not_ask_for_it():
    relay = ADAPTER.relay("chat", "gpt-4o", {"stream": True})
    out = run(relay, [STREAM])
    assert out == STREAM.replace(STREAM_EVENTS[5], b"")
    assert relay.usage == Usage(1200, 7, 1024)
    assert relay.completed


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_output_is_the_same_however_the_upstream_bytes_are_split(include_usage):
    request = {"stream": True, "stream_options": {"include_usage": include_usage}}
    expected = run(ADAPTER.relay("chat", "m", request), [STREAM])
    for cut in range(len(STREAM) + 1):
        relay = ADAPTER.relay("chat", "m", request)
        assert run(relay, [STREAM[:cut], STREAM[cut:]]) == expected
        assert relay.completed
    relay = ADAPTER.relay("chat", "m", request)
    assert run(relay, [STREAM[i : i + 1] for i in range(len(STREAM))]) == expected
    assert relay.usage == Usage(1200, 7, 1024)


def test_a_stream_cut_before_done_is_not_completed_and_gets_no_invented_end():
    relay = ADAPTER.relay("chat", "m", {"stream": True})
    truncated = b"".join(STREAM_EVENTS[:5])
    assert run(relay, [truncated]) == truncated
    assert not relay.completed
    assert relay.usage is None


def test_a_half_received_event_at_the_close_is_dropped():
    relay = ADAPTER.relay("chat", "m", {"stream": True})
    assert run(relay, [STREAM_EVENTS[1], STREAM_EVENTS[3][:40]]) == STREAM_EVENTS[1]
    assert not relay.completed


def test_a_done_without_its_final_blank_line_still_completes():
    relay = ADAPTER.relay("chat", "m", {"stream": True})
    out = run(relay, [STREAM_EVENTS[1], b"data: [DONE]"])
    assert out.endswith(b"data: [DONE]\n\n")
    assert relay.completed


def test_an_error_event_mid_stream_is_passed_on_and_the_stream_is_not_completed():
    # Passed on rebuilt from the safe fields (fault 31: an upstream event may quote the key).
    error = b'data: {"error":{"message":"The server had an error","type":"server_error","code":null}}\n\n'
    rebuilt = (
        b'data: {"error":{"message":"The server had an error","type":"api_error","param":null,'
        b'"code":"server_error"}}\n\n'
    )
    relay = ADAPTER.relay("chat", "m", {"stream": True})
    assert run(relay, [STREAM_EVENTS[1], error, b"data: [DONE]\n\n"]).count(rebuilt) == 1
    assert not relay.completed
    assert relay.error is not None and relay.error.message == "The server had an error"


def test_an_event_with_invalid_json_is_a_bad_upstream_response():
    relay = ADAPTER.relay("chat", "m", {"stream": True})
    with pytest.raises(BadUpstreamResponse):
        relay.feed(b"data: {not json\n\n")


def test_legacy_completion_streams_count_text_and_finish_on_done():
    events = [
        b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m",'
        b'"choices":[{"text":"Once","index":0,"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m",'
        b'"choices":[{"text":" upon","index":0,"logprobs":null,"finish_reason":"length"}]}\n\n',
        b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n',
        b"data: [DONE]\n\n",
    ]
    relay = ADAPTER.relay("completions", "m", {"stream": True})
    assert run(relay, events) == events[0] + events[1] + events[3]
    assert relay.output_chars == len("Once upon")
    assert relay.usage == Usage(3, 2)
    assert relay.completed


def test_embeddings_cannot_be_streamed():
    with pytest.raises(UnsupportedOperation):
        ADAPTER.relay("embeddings", "m", {})


def test_passed_through_chunks_stay_valid_for_the_openai_sdk():
    relay = ADAPTER.relay("chat", "m", {"stream": True, "stream_options": {"include_usage": True}})
    out = run(relay, [STREAM])
    payloads = [line[6:] for line in out.split(b"\n") if line.startswith(b"data: {")]
    parsed = [ChatCompletionChunk.model_validate_json(payload) for payload in payloads]
    assert parsed[-1].usage is not None and parsed[-1].usage.prompt_tokens_details.cached_tokens == 1024


def test_auth_failures_never_echo_the_upstream_body():
    body = b'{"error":{"message":"Incorrect API key provided: sk-live***","type":"invalid_request_error",'
    body += b'"param":null,"code":"invalid_api_key"}}'
    for status in (401, 403):
        info = ADAPTER.parse_error(status, body)
        assert info.type == "authentication_error"
        assert "sk-" not in info.message and "Incorrect" not in info.message


def test_rate_limits_and_request_errors_keep_the_upstream_message_and_code():
    body = b'{"error":{"message":"Rate limit reached for gpt-4o","type":"requests",'
    body += b'"code":"rate_limit_exceeded"}}'
    info = ADAPTER.parse_error(429, body)
    assert (info.type, info.code, info.message) == (
        "rate_limit_error",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-4o",
    )
    body = b'{"error":{"message":"This model\'s maximum context length is 128000 tokens.",'
    body += b'"type":"invalid_request_error","code":"context_length_exceeded"}}'
    assert ADAPTER.parse_error(400, body).type == "invalid_request_error"
    assert ADAPTER.parse_error(503, b'{"error":{"message":"overloaded"}}').type == "api_error"


def test_error_messages_are_bounded_and_scrubbed_of_key_like_strings():
    long = "x" * 1000
    info = ADAPTER.parse_error(400, json.dumps({"error": {"message": long}}).encode())
    assert len(info.message) == 300
    info = ADAPTER.parse_error(
        400, b'{"error":{"message":"bad header Bearer abc.def for key sk-proj-ABCDEF"}}'
    )
    assert "abc.def" not in info.message and "ABCDEF" not in info.message


def test_non_json_error_bodies_get_a_generic_message():
    info = ADAPTER.parse_error(502, b"<html>Bad gateway from a proxy that leaks internals</html>")
    assert info.message == "upstream returned HTTP 502"
    assert info.type == "api_error"


def test_loose_error_shapes_from_compatible_servers_are_understood():
    assert ADAPTER.parse_error(400, b'{"error":"model not loaded"}').message == "model not loaded"
    assert ADAPTER.parse_error(422, b'{"object":"error","message":"bad field"}').message == "bad field"
    assert "extra_forbidden" in ADAPTER.parse_error(422, b'{"detail":[{"type":"extra_forbidden"}]}').message


def test_mistral_validation_errors_name_the_rejected_field():
    body = b'{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","logit_bias"],'
    body += b'"msg":"Extra inputs are not permitted"}]},"type":"invalid_request_error","code":null}'
    info = ADAPTER.parse_error(422, body)
    assert (info.type, info.code) == ("invalid_request_error", "invalid_request_error")
    assert "logit_bias" in info.message
