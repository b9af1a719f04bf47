"""Anthropic's API surface beyond messages.create, through the real sidecar and the real anthropic SDK:
beta and version headers, count_tokens, errors in Anthropic's envelope (402 budget refusals too),
models.list/retrieve in Anthropic's shape, and a Claude Code session's request shapes."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.sidecar.conftest import ANTHROPIC_KEY, CLAUDE
from tests.support.fakes import FakeAnthropic, Fault
from tests.support.sidecar_harness import SidecarThread, budget, connection, ledger_entries, render_dir

APP_KEY = "sluicegate-placeholder-app-key"
CONTEXT_BETA = "context-management-2025-06-27"
# What Claude Code 2.x sends on /v1/messages?beta=true (captured shapes; see docs/claude-code.md).
CLAUDE_CODE_BETAS = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
]
BASH_TOOL = {
    "name": "Bash",
    "description": "Executes a given bash command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
        "required": ["command"],
        "additionalProperties": False,
    },
}


def client(sidecar: SidecarThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sidecar.root_url, api_key=APP_KEY, max_retries=0)


def hi() -> list[dict]:
    return [{"role": "user", "content": "hi"}]


# -- headers --------------------------------------------------------------------------------------


def test_beta_only_fields_work_because_the_beta_header_reaches_anthropic(gateway, anthropic_up) -> None:
    message = client(gateway).beta.messages.create(
        model=CLAUDE,
        max_tokens=10,
        messages=hi(),
        betas=[CONTEXT_BETA],
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
    )
    assert message.content[0].text
    sent = anthropic_up.last_request
    assert sent.headers["anthropic-beta"] == CONTEXT_BETA
    assert sent.json["context_management"] == {"edits": [{"type": "clear_tool_uses_20250919"}]}
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and "authorization" not in sent.headers


def test_the_clients_anthropic_version_is_forwarded_and_a_malformed_beta_is_dropped(
    gateway, anthropic_up
) -> None:
    client(gateway).messages.create(
        model=CLAUDE,
        max_tokens=10,
        messages=hi(),
        extra_headers={"anthropic-version": "2023-01-01", "anthropic-beta": "ok-beta, bad beta;x=1"},
    )
    sent = anthropic_up.last_request
    assert sent.headers["anthropic-version"] == "2023-01-01"
    assert "anthropic-beta" not in sent.headers


# -- count_tokens -----------------------------------------------------------------------------------


def test_count_tokens_is_forwarded_with_the_connection_key_and_costs_nothing(gateway, anthropic_up) -> None:
    anthropic_up.counted_tokens = 1234
    raw = client(gateway).messages.with_raw_response.count_tokens(
        model=CLAUDE, messages=hi(), system="Be brief.", tools=[BASH_TOOL]
    )
    assert raw.parse().input_tokens == 1234
    assert raw.headers["x-sluicegate-token-count"] == "upstream"
    assert raw.headers["x-sluicegate-routed-model"] == f"anthropic/{CLAUDE}"
    sent = anthropic_up.last_request
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.json["model"] == CLAUDE and sent.json["tools"][0]["name"] == "Bash"
    assert "max_tokens" not in sent.json and "stream" not in sent.json
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and APP_KEY not in json.dumps(sent.headers)
    assert "x-sluicegate-cost-usd" not in raw.headers
    assert ledger_entries(gateway) == []  # free upstream: nothing settled, nothing in the ledger


def test_count_tokens_with_betas_forwards_them(gateway, anthropic_up) -> None:
    anthropic_up.counted_tokens = 7
    counted = client(gateway).beta.messages.count_tokens(
        model=CLAUDE,
        messages=hi(),
        betas=[CONTEXT_BETA],
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
    )
    assert counted.input_tokens == 7
    assert CONTEXT_BETA in anthropic_up.last_request.headers["anthropic-beta"].split(",")


def test_count_tokens_for_a_model_without_an_anthropic_connection_is_an_estimate(
    gateway, openai_up, anthropic_up
) -> None:
    raw = client(gateway).messages.with_raw_response.count_tokens(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "word " * 400}]
    )
    assert raw.headers["x-sluicegate-token-count"] == "estimate"
    assert 400 <= raw.parse().input_tokens <= 1200  # an estimate that errs high, never low
    assert openai_up.requests == [] and anthropic_up.requests == []


def test_count_tokens_falls_back_to_the_estimate_when_anthropic_is_overloaded(gateway, anthropic_up) -> None:
    anthropic_up.script([Fault.status(529)])
    raw = client(gateway).messages.with_raw_response.count_tokens(model=CLAUDE, messages=hi())
    assert raw.headers["x-sluicegate-token-count"] == "estimate" and raw.parse().input_tokens > 0


def test_count_tokens_refused_by_anthropic_says_why_in_anthropics_envelope(gateway, anthropic_up) -> None:
    anthropic_up.script([Fault.status(400, message="messages: roles must alternate")])
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(gateway).messages.count_tokens(model=CLAUDE, messages=hi())
    assert caught.value.type == "invalid_request_error"
    assert caught.value.api_message == "messages: roles must alternate"


# -- errors ---------------------------------------------------------------------------------------------


def test_an_unknown_model_is_a_not_found_error_the_sdk_can_read(gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(gateway).messages.create(model="claude-nonexistent", max_tokens=5, messages=hi())
    error = caught.value
    assert error.type == "not_found_error" and error.error_code == "model_not_found"
    assert "claude-nonexistent" in (error.api_message or "")
    assert error.body["type"] == "error"  # type: ignore[index]
    assert error.body["request_id"] == error.response.headers["x-request-id"]  # type: ignore[index]


def test_a_bad_request_on_messages_is_an_invalid_request_error_with_the_reason(gateway) -> None:
    response = httpx.post(
        f"{gateway.root_url}/v1/messages",
        json={"model": CLAUDE, "max_tokens": 5},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "messages" in body["error"]["message"]


def test_an_unknown_messages_path_answers_in_anthropics_envelope(gateway) -> None:
    response = httpx.post(f"{gateway.root_url}/v1/messages/batches", json={})
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


@pytest.fixture
def capped(tmp_path: Path) -> SidecarThread:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        config = render_dir(
            tmp_path / "config",
            [
                connection("anthropic", "anthropic", [CLAUDE], base_url=fake.root_url, key=ANTHROPIC_KEY),
                budget("team-cap", 0.000001, action="BLOCK"),
            ],
        )
        with SidecarThread(config, tmp_path / "ledger") as sidecar:
            yield sidecar


def test_a_budget_refusal_is_a_402_billing_error_whose_reason_the_sdk_shows(capped) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        client(capped).messages.create(model=CLAUDE, max_tokens=50, messages=hi())
    error = caught.value
    assert error.status_code == 402
    assert error.type == "billing_error" and error.error_code == "budget_exceeded"
    assert "Budget exceeded" in (error.api_message or "") and "team-cap" in str(error)


def test_a_stream_refused_for_budget_raises_the_402_before_any_event(capped) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client(capped).messages.stream(model=CLAUDE, max_tokens=50, messages=hi()) as stream,
    ):
        list(stream.text_stream)
    assert caught.value.status_code == 402 and caught.value.type == "billing_error"


def test_a_stream_cut_after_its_first_byte_ends_with_anthropics_error_event(gateway, anthropic_up) -> None:
    anthropic_up.script([Fault.stream_truncate(3)])
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client(gateway).messages.stream(model=CLAUDE, max_tokens=50, messages=hi()) as stream,
    ):
        list(stream.text_stream)
    assert caught.value.body["type"] == "error"  # type: ignore[index]


# -- models -----------------------------------------------------------------------------------------------


def test_models_list_from_the_anthropic_sdk_is_in_anthropics_shape_and_pages(gateway) -> None:
    first = client(gateway).models.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    assert all(m.type == "model" and m.display_name == m.id for m in first.data)
    every = [m.id for m in client(gateway).models.list(limit=2)]  # the SDK follows after_id
    assert f"anthropic/{CLAUDE}" in every and "openai/gpt-4o" in every and "tier:standard" in every
    assert len(every) == len(set(every))
    openai_shape = httpx.get(f"{gateway.base_url}/models", headers={"authorization": "Bearer x"}).json()
    assert openai_shape["object"] == "list" and {m["id"] for m in openai_shape["data"]} == set(every)


def test_models_retrieve_from_the_anthropic_sdk_finds_pinned_and_bare_names(gateway) -> None:
    model = client(gateway).models.retrieve(f"anthropic/{CLAUDE}")
    assert model.id == f"anthropic/{CLAUDE}" and model.type == "model" and model.lifecycle == "active"
    assert client(gateway).models.retrieve(CLAUDE).id == CLAUDE
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(gateway).models.retrieve("claude-nonexistent")
    assert caught.value.type == "not_found_error"


# -- Claude Code ---------------------------------------------------------------------------------------------


def test_a_claude_code_turn_streams_a_tool_call_then_an_answer_with_betas_forwarded(
    gateway, anthropic_up
) -> None:
    """Claude Code's shapes: /v1/messages?beta=true, its beta list, system blocks with cache_control,
    tools, metadata.user_id, streaming; and a count_tokens call between turns."""
    sdk = client(gateway)
    system = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
    common = {
        "model": CLAUDE,
        "max_tokens": 32000,
        "system": system,
        "tools": [BASH_TOOL],
        "metadata": {"user_id": "user_abc_account__session_123"},
        "betas": CLAUDE_CODE_BETAS,
    }
    anthropic_up.tool_input = {"command": "ls"}
    messages = [{"role": "user", "content": "List the files"}]
    with sdk.beta.messages.stream(messages=messages, **common) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use" and first.content[0].input == {"command": "ls"}
    sent = anthropic_up.last_request
    assert sent.headers["anthropic-beta"] == ",".join(CLAUDE_CODE_BETAS)
    assert sent.json["system"] == system and sent.json["metadata"]["user_id"].startswith("user_")
    call = first.content[0]
    messages += [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call.id, "name": "Bash", "input": call.input}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "README.md"}],
        },
    ]
    counted = sdk.beta.messages.count_tokens(
        model=CLAUDE, messages=messages, system=system, tools=[BASH_TOOL], betas=CLAUDE_CODE_BETAS
    )
    assert counted.input_tokens > 0
    assert anthropic_up.last_request.path == "/v1/messages/count_tokens"
    anthropic_up.script([Fault.ok(text="There is one file: README.md")])
    with sdk.beta.messages.stream(messages=messages, tool_choice={"type": "none"}, **common) as stream:
        text = "".join(stream.text_stream)
    assert text == "There is one file: README.md"
