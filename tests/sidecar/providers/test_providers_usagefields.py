"""Usage parsing is total (fault 30): every adapter reads any usage object without raising, keeps the
valid counts, flags the bad ones with a reason from the bounded set and keeps what was reported."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluicegate_sidecar.providers.anthropic import AnthropicAdapter
from sluicegate_sidecar.providers.base import ReportedUsage, Usage
from sluicegate_sidecar.providers.gemini import GeminiAdapter
from sluicegate_sidecar.providers.openai import OpenAIAdapter
from sluicegate_sidecar.providers.usagefields import ANOMALY_REASONS, UsageReader, sticky


def openai_reply(usage: Any) -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    return json.dumps({"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}).encode()


def anthropic_reply(usage: Any) -> bytes:
    message = {"id": "m", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "hi"}]}
    return json.dumps(message | {"stop_reason": "end_turn", "usage": usage}).encode()


def gemini_reply(usage: Any) -> bytes:
    candidate = {"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}
    return json.dumps({"candidates": [candidate], "usageMetadata": usage}).encode()


@pytest.mark.parametrize(
    ("usage", "reason", "reported"),
    [
        ({"prompt_tokens": -5, "completion_tokens": 7}, "negative", ReportedUsage(-5, 7, 0, 0)),
        ({"prompt_tokens": 10**12, "completion_tokens": 7}, "huge", ReportedUsage(10**12, 7, 0, 0)),
        ({"prompt_tokens": "12", "completion_tokens": 7}, "not_integer", ReportedUsage(None, 7, 0, 0)),
        ({"prompt_tokens": 12, "completion_tokens": 7.5}, "not_integer", ReportedUsage(12, None, 0, 0)),
        ({"prompt_tokens": True, "completion_tokens": 7}, "not_integer", ReportedUsage(None, 7, 0, 0)),
        ({"prompt_tokens": 12, "completion_tokens": None}, "missing", ReportedUsage(12, None, 0, 0)),
        ({"total_tokens": 19}, "missing", ReportedUsage(None, None, 0, 0)),
        ({"prompt_tokens": 10**30, "completion_tokens": 7}, "huge", ReportedUsage(None, 7, 0, 0)),
    ],
)
def test_openai_bad_counts_are_flagged_with_the_valid_ones_kept(usage, reason, reported) -> None:
    parsed = OpenAIAdapter().parse("chat", "gpt-4o-mini", openai_reply(usage)).usage
    assert parsed is not None and parsed.anomaly == reason and parsed.reported == reported
    assert parsed.input_tokens >= 0 and parsed.output_tokens >= 0
    assert parsed.output_tokens == (7 if reported.output_tokens == 7 else 0)


def test_a_usage_that_is_not_an_object_is_malformed_not_a_bad_reply() -> None:
    assert OpenAIAdapter().parse("chat", "m", openai_reply("lots")).usage.anomaly == "malformed"  # type: ignore[union-attr]
    assert AnthropicAdapter().parse("chat", "m", anthropic_reply([1])).usage.anomaly == "malformed"  # type: ignore[union-attr]
    assert GeminiAdapter().parse("chat", "m", gemini_reply("lots")).usage.anomaly == "malformed"  # type: ignore[union-attr]


def test_no_usage_at_all_is_none_as_before_not_an_anomaly() -> None:
    assert OpenAIAdapter().parse("chat", "m", openai_reply(None)).usage is None
    assert AnthropicAdapter().parse("messages", "m", anthropic_reply(None)).usage is None
    assert GeminiAdapter().parse("chat", "m", gemini_reply(None)).usage is None


def test_correct_usage_of_each_provider_is_not_flagged() -> None:
    openai = OpenAIAdapter().parse("chat", "m", openai_reply({"prompt_tokens": 12, "completion_tokens": 7}))
    assert openai.usage == Usage(12, 7)
    anthropic = AnthropicAdapter().parse(
        "messages",
        "m",
        anthropic_reply({"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": None}),
    )
    assert anthropic.usage == Usage(5, 7)
    gemini = GeminiAdapter().parse("chat", "m", gemini_reply({"promptTokenCount": 12}))  # zeros left out
    assert gemini.usage == Usage(12, 0)


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        ({"input_tokens": -1, "output_tokens": 7}, "negative"),
        ({"input_tokens": 5, "output_tokens": "7"}, "not_integer"),
        ({"output_tokens": 7}, "missing"),
        ({"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": -3}, "negative"),
    ],
)
def test_anthropic_bad_counts_are_flagged_in_replies_and_translated_replies(usage, reason) -> None:
    for op in ("messages", "chat"):
        parsed = AnthropicAdapter().parse(op, "m", anthropic_reply(usage)).usage  # type: ignore[arg-type]
        assert parsed is not None and parsed.anomaly == reason
        assert min(parsed.input_tokens, parsed.output_tokens, parsed.cached_input_tokens) >= 0


def test_an_anomaly_early_in_a_stream_stays_flagged_when_later_usage_is_fine() -> None:
    relay = AnthropicAdapter().relay("messages", "m", {})
    start = {
        "type": "message_start",
        "message": {"model": "m", "usage": {"input_tokens": -4, "output_tokens": 1}},
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}
    for event in (start, delta, {"type": "message_stop"}):
        relay.feed(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    assert relay.usage is not None and relay.usage.anomaly == "negative" and relay.usage.output_tokens == 9
    assert relay.completed


def test_gemini_stream_usage_with_a_string_count_does_not_break_the_stream() -> None:
    relay = GeminiAdapter().relay("chat", "m", {})
    chunk = {
        "candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": "12", "candidatesTokenCount": 2},
    }
    out = relay.feed(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n") + relay.finish()
    assert b"hi" in out and b"[DONE]" in out
    assert relay.usage is not None and relay.usage.anomaly == "not_integer" and relay.usage.output_tokens == 2


def test_reasons_are_a_small_fixed_set() -> None:
    assert len(ANOMALY_REASONS) == len(set(ANOMALY_REASONS)) <= 8
    reader = UsageReader({"a": -1})
    reader.count("a")
    assert reader.anomaly in ANOMALY_REASONS
    assert sticky(None, None) is None
