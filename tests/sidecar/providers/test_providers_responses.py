"""The Responses API's pure parts: the request translated to chat, chat replies and chunk streams
rewritten as Responses, the pass-through relay's reading of the event stream, and the prompt bound."""

from __future__ import annotations

import json

import msgspec
import pytest

from sluicegate_sidecar.providers.base import UnsupportedOperation, Usage
from sluicegate_sidecar.providers.openai_responses import ResponsesPassthroughRelay, parse_responses_reply
from sluicegate_sidecar.providers.responses_chat import chat_request, response_from_chat
from sluicegate_sidecar.providers.responses_stream import ChatToResponses, ResponsesEvents
from sluicegate_sidecar.tokens import estimate_prompt_tokens


def events_of(data: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in data.decode().splitlines() if line.startswith("data: ")]


def test_a_conversation_with_a_tool_round_trip_becomes_chat_messages() -> None:
    request = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "noon"}],
            },
        ],
        "tools": [
            {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}
        ],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {
            "format": {"type": "json_schema", "name": "W", "schema": {"type": "object"}, "strict": True}
        },
        "max_output_tokens": 300,
        "reasoning": {"effort": "low"},
        "store": True,
    }
    chat = chat_request(request, "anthropic", stream=True)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
    ]
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True},
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "W", "schema": {"type": "object"}, "strict": True},
    }
    assert chat["max_tokens"] == 300 and chat["reasoning_effort"] == "low"
    assert chat["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_1"),
        ("conversation", "conv_1"),
        ("background", True),
        ("tools", [{"type": "web_search"}]),
        ("input", [{"type": "item_reference", "id": "msg_1"}]),
    ],
)
def test_what_needs_openai_state_or_hosted_tools_is_refused_for_translated_providers(field, value) -> None:
    request = {"model": "m", "input": "hi", field: value}
    with pytest.raises(UnsupportedOperation, match=field.split("_")[0] if field != "tools" else "function"):
        chat_request(request, "gemini", stream=False)


def test_a_chat_completion_with_text_and_a_tool_call_becomes_a_response() -> None:
    completion = {
        "id": "msg_01",
        "model": "claude",
        "choices": [
            {
                "message": {
                    "content": "Let me look.",
                    "tool_calls": [{"id": "toolu_1", "function": {"name": "get_weather", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    response = response_from_chat(completion, "m", Usage(100, 20, 30))
    assert response["id"] == "resp_msg_01" and response["status"] == "completed"
    message, call = response["output"]
    assert message["content"][0] == {
        "type": "output_text",
        "text": "Let me look.",
        "annotations": [],
        "logprobs": [],
    }
    assert (call["type"], call["call_id"], call["name"]) == ("function_call", "toolu_1", "get_weather")
    assert response["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 30},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 120,
    }
    assert response["store"] is False  # nothing is kept to retrieve


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    chunk = {"id": "x1", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        chunk = {"id": "x1", "model": "m", "choices": [], "usage": usage}
    return b"data: " + msgspec.json.encode(chunk) + b"\n\n"


def test_a_chat_chunk_stream_split_anywhere_becomes_numbered_responses_events() -> None:
    stream = b"".join(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}),
            _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            _chunk({}, "tool_calls"),
            _chunk({}, usage={"prompt_tokens": 7, "completion_tokens": 5}),
            b"data: [DONE]\n\n",
        ]
    )
    rewrite = ChatToResponses("m", {"instructions": "I"}, ResponsesEvents())
    out = b"".join(rewrite.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    events = events_of(out)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    assert final["instructions"] == "I" and final["usage"]["output_tokens"] == 5
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == '{"a":1}'
    assert rewrite.done


def test_a_chat_stream_without_its_end_gets_no_completed_event() -> None:
    rewrite = ChatToResponses("m", {}, ResponsesEvents())
    out = rewrite.feed(_chunk({"content": "Hi"}) + _chunk({}, "stop"))
    assert "response.completed" not in out.decode() and not rewrite.done


def _event(kind: str, n: int, **fields: object) -> bytes:
    return (
        f"event: {kind}\ndata: ".encode()
        + msgspec.json.encode({"type": kind, **fields, "sequence_number": n})
        + b"\n\n"
    )


def test_the_pass_through_relay_forwards_bytes_and_reads_usage_and_the_end() -> None:
    usage = {"input_tokens": 10, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2}}
    stream = (
        _event("response.created", 0, response={"status": "in_progress", "usage": None})
        + _event("response.output_text.delta", 1, delta="Hello")
        + _event("response.function_call_arguments.delta", 2, delta="{}")
        + _event("response.completed", 3, response={"status": "completed", "usage": usage})
    )
    relay = ResponsesPassthroughRelay()
    assert relay.feed(stream[:40]) + relay.feed(stream[40:]) + relay.finish() == stream
    assert relay.usage == Usage(10, 4, 2) and relay.completed and relay.output_chars == 7
    assert events_of(relay.error_event("cut", "x"))[0]["sequence_number"] == 4


def test_the_pass_through_relay_makes_upstream_error_events_safe_and_not_complete() -> None:
    relay = ResponsesPassthroughRelay()
    relay.feed(_event("response.created", 0, response={}))
    out = relay.feed(
        _event("error", 1, code="server_error", message="bad key sk-abcdefghijklmnop", param=None)
    )
    [event] = events_of(out)
    assert event["sequence_number"] == 1 and event["type"] == "error"
    assert "sk-abcdefghijklmnop" not in out.decode() and "[redacted]" in event["message"]
    assert not relay.completed
    failed = relay.feed(
        _event("response.failed", 2, response={"error": {"code": "e", "message": "sk-abcdefghijklmnop"}})
    )
    assert b"sk-abcdefghijklmnop" not in failed and not relay.completed


def test_a_response_reply_is_passed_through_with_its_usage() -> None:
    body = msgspec.json.encode(
        {"id": "r", "output": [], "status": "completed", "usage": {"input_tokens": 3, "output_tokens": 2}}
    )
    reply = parse_responses_reply(body)
    assert (reply.body, reply.usage, reply.finish_reason) == (body, Usage(3, 2), "completed")


def test_the_prompt_bound_counts_instructions_tools_and_the_output_schema() -> None:
    bare = {"model": "m", "input": "hi"}
    full = bare | {
        "instructions": "x" * 700,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
    }
    assert estimate_prompt_tokens("responses", full) >= estimate_prompt_tokens("responses", bare) + 200 + 8


def test_a_final_event_with_an_impossible_usage_ends_the_stream_with_the_usage_flagged() -> None:
    relay = ResponsesPassthroughRelay()
    raw = _event("response.completed", 0, response={"usage": {"input_tokens": "many", "output_tokens": -3}})
    assert relay.feed(raw) == raw
    assert relay.completed and relay.usage is not None
    assert relay.usage.anomaly == "not_integer" and (relay.usage.input_tokens, relay.usage.output_tokens) == (
        0,
        0,
    )


def test_a_final_event_of_an_unusual_shape_still_ends_the_stream() -> None:
    relay = ResponsesPassthroughRelay()
    raw = _event("response.completed", 0, response=["not", "an", "object"])
    assert relay.feed(raw) == raw and relay.completed


def test_a_last_event_without_its_blank_line_is_still_read() -> None:
    relay = ResponsesPassthroughRelay()
    first = _event("response.created", 0, response={})
    last = _event("response.completed", 1, response={"usage": {"input_tokens": 1, "output_tokens": 1}})
    assert relay.feed(first + last[:-1]) == first
    assert relay.finish() == last and relay.completed and relay.usage == Usage(1, 1)


@pytest.mark.parametrize("payload", [b"[1, 2]", b'{"type": {"a": 1}}', b'"text"'])
def test_well_formed_but_strange_events_pass_through_without_ending_the_stream(payload) -> None:
    relay = ResponsesPassthroughRelay()
    raw = b"data: " + payload + b"\n\n"
    assert relay.feed(raw) == raw and not relay.completed


def test_an_earlier_assistant_turn_as_openai_agents_sends_it_becomes_an_assistant_message() -> None:
    earlier = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
    }
    request = {
        "model": "m",
        "input": [{"role": "user", "content": "Capital?"}, earlier, {"role": "user", "content": "Sure?"}],
    }
    assert chat_request(request, "anthropic", stream=False)["messages"] == [
        {"role": "user", "content": "Capital?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Sure?"},
    ]


def test_an_error_event_of_an_unusual_shape_is_still_rebuilt_from_safe_fields() -> None:
    relay = ResponsesPassthroughRelay()
    payload = {"type": "error", "sequence_number": "7", "message": "key sk-abcdefghijklmnop rejected"}
    out = relay.feed(b"event: error\ndata: " + msgspec.json.encode(payload) + b"\n\n")
    [event] = events_of(out)
    assert event["type"] == "error" and "sk-abcdefghijklmnop" not in out.decode()
    assert not relay.completed
