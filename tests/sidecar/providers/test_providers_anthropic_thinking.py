"""Anthropic's extended thinking on translated Responses, the pure parts: the effort → budget mapping
and its constraints, redacted thinking both ways, and chat requests left without thinking."""

from __future__ import annotations

import json

import msgspec

from sluicegate_sidecar.providers.anthropic import AnthropicAdapter, ChatRelay
from sluicegate_sidecar.providers.base import Connection
from sluicegate_sidecar.providers.responses_stream import ChatToResponses, ResponsesEvents

CONN = Connection(name="anthropic", provider="anthropic", api_key="k", base_url="http://fake")
TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}


def sent(request: dict, op: str = "responses") -> dict:
    built = AnthropicAdapter().build(op, CONN, "claude", request, stream=False)  # type: ignore[arg-type]
    return msgspec.json.decode(built.body)


def test_each_effort_maps_to_a_documented_budget_below_max_tokens() -> None:
    asked = {"input": "hi", "max_output_tokens": 64000}
    budgets = {e: sent(asked | {"reasoning": {"effort": e}})["thinking"]["budget_tokens"] for e in
               ("minimal", "low", "medium", "high", "xhigh")}  # fmt: skip
    assert budgets == {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
    assert "thinking" not in sent(asked | {"reasoning": {"effort": "none"}})
    assert "thinking" not in sent(asked | {"reasoning": {"effort": "medium"}, "max_output_tokens": 1024})


def test_with_thinking_on_temperature_and_low_top_p_are_not_sent_and_a_forced_tool_turns_it_off() -> None:
    body = sent({"input": "hi", "reasoning": {"effort": "low"}, "temperature": 0.2, "top_p": 0.5})
    assert "thinking" in body and "temperature" not in body and "top_p" not in body
    forced = sent({"input": "hi", "reasoning": {"effort": "low"}, "tools": [TOOL], "tool_choice": "required"})
    assert "thinking" not in forced and forced["tool_choice"] == {"type": "any"}
    plain = sent({"input": "hi", "temperature": 0.2})
    assert "thinking" not in plain and plain["temperature"] == 0.2


def test_a_chat_request_with_reasoning_effort_and_thinking_blocks_gets_no_thinking() -> None:
    blocks = [{"type": "thinking", "thinking": "t", "signature": "s"}]
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yes", "thinking_blocks": blocks},
        {"role": "user", "content": "and?"},
    ]
    body = sent({"messages": messages, "reasoning_effort": "high"}, "chat")
    assert "thinking" not in body and "thinking" not in json.dumps(body["messages"])


def test_redacted_thinking_becomes_an_opaque_reasoning_item_and_goes_back_as_it_came() -> None:
    message = {
        "id": "msg_1",
        "model": "claude",
        "content": [REDACTED, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }
    reply = AnthropicAdapter().parse("responses", "claude", msgspec.json.encode(message))
    reasoning, call = msgspec.json.decode(reply.body)["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == []
    assert reasoning["encrypted_content"] == "anthropic.redacted_thinking:" + REDACTED["data"]
    follow_up = [
        {"role": "user", "content": "go"},
        reasoning,
        call,
        {"type": "function_call_output", "call_id": "t1", "output": "done"},
    ]
    body = sent({"input": follow_up, "tools": [TOOL], "reasoning": {"effort": "low"}})
    assert body["messages"][1]["content"][0] == REDACTED and "thinking" in body


def test_a_streamed_redacted_block_is_a_reasoning_item_without_a_summary_part() -> None:
    relay = ChatRelay("claude", client_wants_usage=True)
    rewrite = ChatToResponses("claude", {}, ResponsesEvents())
    frames = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": REDACTED},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    data = b"".join(b"data: " + msgspec.json.encode(f) + b"\n\n" for f in frames)
    out = rewrite.feed(relay.feed(data))
    events = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert "response.reasoning_summary_part.added" not in kinds
    final = events[-1]["response"]
    assert final["output"][0]["encrypted_content"] == "anthropic.redacted_thinking:" + REDACTED["data"]
    assert final["output"][1]["content"][0]["text"] == "ok" and final["usage"]["output_tokens"] == 9


def test_a_reasoning_item_anthropic_did_not_sign_is_dropped_and_the_tool_loop_goes_without_thinking() -> None:
    openai_made = {"type": "reasoning", "id": "rs_68af", "summary": [], "encrypted_content": "gAAAAABo"}
    follow_up = [
        {"role": "user", "content": "go"},
        openai_made,
        {"type": "function_call", "call_id": "t1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "t1", "output": "done"},
    ]
    body = sent({"input": follow_up, "tools": [TOOL], "reasoning": {"effort": "low"}})
    assert "thinking" not in body and "gAAAAABo" not in json.dumps(body)
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_use"]
