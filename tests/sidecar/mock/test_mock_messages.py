"""The mock provider's Anthropic side: Messages replies and streams, count_tokens and errors, in
Anthropic's wire format (the anthropic SDK reads them through the sidecar: test_sidecar_offline)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from sluicegate_contract.schema import MockSettings
from sluicegate_sidecar.mock.transport import MockUpstreamTransport

ROOT = "http://mock.sluicegate.invalid"
ASK = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
TOOL = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


@pytest.fixture
async def mock() -> AsyncIterator[httpx.AsyncClient]:
    transport = MockUpstreamTransport(MockSettings(), 0)
    async with httpx.AsyncClient(transport=transport, base_url=ROOT) as client:
        yield client


def events(text: str) -> list[tuple[str, dict]]:
    out = []
    for frame in text.strip().split("\n\n"):
        name, data = frame.split("\n", 1)
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


async def test_a_message_streamed_and_not_says_the_same(mock) -> None:
    message = (await mock.post("/v1/messages", json=ASK)).json()
    assert message["type"] == "message" and message["content"][0]["type"] == "text"
    assert message["usage"]["output_tokens"] > 0 and message["stop_reason"] in ("end_turn", "max_tokens")
    streamed = events((await mock.post("/v1/messages", json=ASK | {"stream": True})).text)
    names = [name for name, _ in streamed]
    assert names[:2] == ["message_start", "content_block_start"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    text = "".join(e["delta"]["text"] for n, e in streamed if n == "content_block_delta")
    assert text == message["content"][0]["text"]


async def test_a_tool_is_called_after_a_user_turn_and_not_after_its_result(mock) -> None:
    called = (await mock.post("/v1/messages", json=ASK | {"tools": [TOOL]})).json()
    block = called["content"][0]
    assert (
        called["stop_reason"] == "tool_use"
        and block["type"] == "tool_use"
        and isinstance(block["input"]["q"], str)
    )
    after = ASK["messages"] + [
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "42"}]},
    ]
    answered = (await mock.post("/v1/messages", json=ASK | {"tools": [TOOL], "messages": after})).json()
    assert answered["content"][0]["type"] == "text"
    none = (
        await mock.post("/v1/messages", json=ASK | {"tools": [TOOL], "tool_choice": {"type": "none"}})
    ).json()
    assert none["content"][0]["type"] == "text"


async def test_structured_output_follows_the_schema(mock) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = ASK | {"max_tokens": 500, "output_format": {"type": "json_schema", "schema": schema}}
    message = (await mock.post("/v1/messages", json=body)).json()
    assert isinstance(json.loads(message["content"][0]["text"])["n"], int)


async def test_count_tokens_counts_and_bad_requests_get_anthropics_envelope(mock) -> None:
    counted = (
        await mock.post("/v1/messages/count_tokens", json={k: v for k, v in ASK.items() if k != "max_tokens"})
    ).json()
    assert counted["input_tokens"] > 0
    refused = await mock.post("/v1/messages", json={k: v for k, v in ASK.items() if k != "max_tokens"})
    assert refused.status_code == 400
    assert refused.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: Field required (a positive integer)",
        },
    }
