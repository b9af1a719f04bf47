"""Gemini's thinking on translated Responses, the pure parts: effort → budget or level within the cap,
chat requests left as they were, thoughts and signatures into reasoning items, and the reasoning
tokens in the chat usage."""

from __future__ import annotations

import msgspec

from sluicegate_sidecar.providers.base import Connection
from sluicegate_sidecar.providers.gemini import GeminiAdapter

CONN = Connection(name="gemini", provider="gemini", base_url="http://fake", api_key="k")
CALL = {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "CiQBsig"}
META = {"promptTokenCount": 5, "candidatesTokenCount": 3, "thoughtsTokenCount": 7, "totalTokenCount": 15}


def config(request: dict, model: str = "gemini-2.5-flash", op: str = "responses") -> dict:
    built = GeminiAdapter().build(op, CONN, model, request, stream=False)  # type: ignore[arg-type]
    return msgspec.json.decode(built.body).get("generationConfig") or {}


def test_each_effort_maps_to_a_budget_carved_out_of_the_cap_or_to_a_gemini_3_level() -> None:
    asked = {"input": "hi", "max_output_tokens": 64000}
    efforts = ("minimal", "low", "medium", "high", "xhigh")
    budgets = {
        e: config(asked | {"reasoning": {"effort": e}})["thinkingConfig"]["thinkingBudget"] for e in efforts
    }
    assert budgets == {"minimal": 512, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576}
    sent = config(asked | {"reasoning": {"effort": "high"}})
    assert sent["maxOutputTokens"] + sent["thinkingConfig"]["thinkingBudget"] == 64000
    levels = {
        e: config(asked | {"reasoning": {"effort": e}}, "gemini-3-flash-preview")["thinkingConfig"]
        for e in efforts
    }
    assert {e: c["thinkingLevel"] for e, c in levels.items()} == {
        "minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high"
    }  # fmt: skip
    assert all(c["includeThoughts"] is True and "thinkingBudget" not in c for c in levels.values())
    assert "thinkingConfig" not in config(asked | {"reasoning": {"effort": "none"}})
    assert "thinkingConfig" not in config(asked | {"reasoning": {"effort": "low"}, "max_output_tokens": 1000})


def test_chat_requests_keep_gemini_default_thinking() -> None:
    chat = {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high", "max_tokens": 9000}
    assert config(chat, op="chat") == {"maxOutputTokens": 9000}


def test_thoughts_and_the_first_call_signature_become_a_reasoning_item_with_the_reasoning_tokens() -> None:
    parts = [{"text": "Let me see.", "thought": True}, CALL, {"functionCall": {"name": "g", "args": {}}}]
    reply = {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": META,
    }
    parsed = GeminiAdapter().parse("responses", "gemini-2.5-flash", msgspec.json.encode(reply))
    response = msgspec.json.decode(parsed.body)
    reasoning, *calls = response["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me see."}]
    assert reasoning["encrypted_content"] == "gemini.thought_signature:CiQBsig"
    assert [c["name"] for c in calls] == ["f", "g"]
    assert response["usage"]["output_tokens"] == 10 and response["usage"]["output_tokens_details"] == {
        "reasoning_tokens": 7
    }
    chat = GeminiAdapter().parse("chat", "gemini-2.5-flash", msgspec.json.encode(reply))
    assert msgspec.json.decode(chat.body)["usage"]["completion_tokens_details"] == {"reasoning_tokens": 7}
