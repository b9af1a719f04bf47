"""The Node SDKs through the sidecar, as a JavaScript app uses them: the openai npm package (Responses
API and chat) and the Vercel AI SDK (``openai(model)`` on the Responses API, ``openai.chat(model)`` on
chat, ``anthropic(model)`` on the Messages API) — text, streamed text, a tool round trip, an object
for a zod schema, and a budget refusal — against fake upstreams and offline (the mock).

The scripts are tests/support/node/*.mjs, the packages pinned there (tests/support/node_sdks.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate_cli.main import main as cli
from tests.sidecar.conftest import ANTHROPIC_KEY, CLAUDE, OPENAI_KEY
from tests.support.fakes import DEFAULT_TEXT, FakeServer
from tests.support.node_sdks import install, run_script
from tests.support.sidecar_harness import SidecarThread, budget, connection, ledger_entries, render_dir

ROOT = Path(__file__).resolve().parents[2]
# The Vercel AI SDK's providers: (the sidecar's model, the upstream that answers it, the path it calls)
AI_SDK = {
    "openai": ("openai/gpt-4o-mini", "openai", "/v1/responses"),
    "openai-chat": ("openai/gpt-4o-mini", "openai", "/v1/chat/completions"),
    "anthropic": (CLAUDE, "anthropic", "/v1/messages"),
}
OFFLINE_MODELS = {"openai": "gpt-4o-mini", "openai-chat": "gpt-4o-mini", "anthropic": "claude-haiku"}
PROVIDERS = pytest.mark.parametrize("provider", list(AI_SDK))
OBJECT = {"city": "Paris", "sunny": True}


@pytest.fixture(scope="session")
def node_dir() -> Path:
    return install()


def openai_node(node_dir: Path, sc: SidecarThread, scenario: str, model: str) -> dict[str, Any]:
    return run_script(node_dir, "openai_sdk.mjs", scenario, SIDECAR_URL=sc.root_url, MODEL=model)


def ai_sdk(node_dir: Path, sc: SidecarThread, provider: str, scenario: str, model: str) -> dict[str, Any]:
    return run_script(
        node_dir, "ai_sdk.mjs", scenario, SIDECAR_URL=sc.root_url, MODEL=model, PROVIDER=provider
    )


@pytest.fixture
def upstreams(openai_up, anthropic_up) -> dict[str, FakeServer]:
    return {"openai": openai_up, "anthropic": anthropic_up}


# -- the openai npm package ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", f"anthropic/{CLAUDE}"], ids=["passed", "translated"])
def test_the_node_openai_sdk_creates_and_streams_responses(node_dir, gateway, model) -> None:
    whole = openai_node(node_dir, gateway, "responses", model)
    assert whole["text"] == DEFAULT_TEXT and whole["status"] == "completed"
    assert whole["usage"]["output_tokens"] > 0
    streamed = openai_node(node_dir, gateway, "responses-stream", model)
    assert len(streamed["deltas"]) > 1 and "".join(streamed["deltas"]) == DEFAULT_TEXT
    assert streamed["text"] == DEFAULT_TEXT and streamed["usage"]["output_tokens"] > 0
    assert streamed["types"][0] == "response.created" and streamed["types"][-1] == "response.completed"
    entries = ledger_entries(gateway)
    assert [(e["status"], e["requestedModel"]) for e in entries] == [(200, model)] * 2
    assert all(e["costMicroUSD"] > 0 for e in entries)


def test_the_node_openai_sdk_chats_and_streams_chat(node_dir, gateway, openai_up) -> None:
    whole = openai_node(node_dir, gateway, "chat", "openai/gpt-4o-mini")
    assert whole["text"] == DEFAULT_TEXT and whole["usage"]["completion_tokens"] > 0
    streamed = openai_node(node_dir, gateway, "chat-stream", "openai/gpt-4o-mini")
    assert len(streamed["deltas"]) > 1 and streamed["text"] == DEFAULT_TEXT
    assert streamed["usage"]["completion_tokens"] > 0
    assert openai_up.last_request.path == "/v1/chat/completions"
    assert [e["status"] for e in ledger_entries(gateway)] == [200, 200]


# -- the Vercel AI SDK -----------------------------------------------------------------------------


@PROVIDERS
def test_the_ai_sdk_generates_and_streams_text(node_dir, gateway, upstreams, provider) -> None:
    model, upstream, path = AI_SDK[provider]
    generated = ai_sdk(node_dir, gateway, provider, "text", model)
    assert generated["text"] == DEFAULT_TEXT and generated["finishReason"] == "stop"
    assert generated["usage"]["outputTokens"] > 0
    streamed = ai_sdk(node_dir, gateway, provider, "stream", model)
    assert len(streamed["chunks"]) > 1 and "".join(streamed["chunks"]) == DEFAULT_TEXT
    assert streamed["usage"]["outputTokens"] > 0
    assert [r.path for r in upstreams[upstream].requests] == [path, path]
    entries = ledger_entries(gateway)
    assert [e["status"] for e in entries] == [200, 200] and all(e["costMicroUSD"] > 0 for e in entries)


@PROVIDERS
def test_the_ai_sdk_calls_a_tool_and_answers_with_its_result(node_dir, gateway, upstreams, provider) -> None:
    model, upstream, path = AI_SDK[provider]
    upstreams[upstream].tool_input = {"city": "Paris"}
    result = ai_sdk(node_dir, gateway, provider, "tools", model)
    assert result["calls"] == ["Paris"] and result["steps"] == 2 and result["text"] == DEFAULT_TEXT
    first, second = upstreams[upstream].requests
    assert first.path == second.path == path
    assert "get_weather" in json.dumps(first.json["tools"]) and "Sunny in Paris" in json.dumps(second.json)
    assert [e["status"] for e in ledger_entries(gateway)] == [200, 200]


@PROVIDERS
def test_the_ai_sdk_generates_an_object_for_a_zod_schema(node_dir, gateway, upstreams, provider) -> None:
    model, upstream, path = AI_SDK[provider]
    upstreams[upstream].text = json.dumps(OBJECT)
    upstreams[upstream].tool_input = OBJECT  # should the SDK ask for the object as a tool call
    assert ai_sdk(node_dir, gateway, provider, "object", model)["object"] == OBJECT
    sent = upstreams[upstream].last_request
    assert sent.path == path and '"sunny"' in json.dumps(sent.json)  # the schema reached the upstream


# -- a budget refusal --------------------------------------------------------------------------------


@pytest.fixture
def capped(tmp_path: Path, openai_up, anthropic_up) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
            connection("anthropic", "anthropic", [CLAUDE], base_url=anthropic_up.root_url, key=ANTHROPIC_KEY),
            budget("team-cap", 0.000001, action="BLOCK"),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        yield sc


def test_a_budget_refusal_is_the_node_openai_sdks_api_error_with_our_message(node_dir, capped) -> None:
    refused = openai_node(node_dir, capped, "refused", "openai/gpt-4o-mini")
    assert refused["status"] == 402 and refused["code"] == "budget_exceeded"
    assert "Budget exceeded" in refused["message"] and "team-cap" in refused["message"]


@PROVIDERS
def test_a_budget_refusal_is_the_ai_sdks_api_call_error_with_our_message(
    node_dir, capped, upstreams, provider
) -> None:
    model, upstream, _ = AI_SDK[provider]
    refused = ai_sdk(node_dir, capped, provider, "refused", model)
    assert refused["error"] == "AI_APICallError" and refused["status"] == 402
    assert "Budget exceeded" in refused["message"] and "team-cap" in refused["message"]
    assert upstreams[upstream].requests == []


# -- offline: the examples rendered --offline, every connection the mock ------------------------------


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Iterator[SidecarThread]:
    base = tmp_path_factory.mktemp("offline-node")
    assert cli(["render", "-f", str(ROOT / "examples"), "-o", str(base / "config"), "--offline"]) == 0
    with SidecarThread(base / "config", base / "ledger", access_log=False) as sidecar:
        yield sidecar


def test_the_node_openai_sdk_works_offline(node_dir, offline) -> None:
    whole = openai_node(node_dir, offline, "responses", "gpt-4o-mini")
    assert whole["status"] == "completed" and len(whole["text"].split()) > 5
    streamed = openai_node(node_dir, offline, "responses-stream", "gpt-4o-mini")
    assert "".join(streamed["deltas"]) == streamed["text"] and len(streamed["deltas"]) > 1
    chat = openai_node(node_dir, offline, "chat-stream", "gpt-4o-mini")
    assert chat["text"] and chat["usage"]["completion_tokens"] == len(chat["deltas"])


@PROVIDERS
def test_the_ai_sdk_works_offline(node_dir, offline, provider) -> None:
    model = OFFLINE_MODELS[provider]
    generated = ai_sdk(node_dir, offline, provider, "text", model)
    assert len(generated["text"].split()) > 5 and generated["usage"]["outputTokens"] > 0
    streamed = ai_sdk(node_dir, offline, provider, "stream", model)
    assert len(streamed["chunks"]) > 1 and "".join(streamed["chunks"]) == streamed["text"]
    tools = ai_sdk(node_dir, offline, provider, "tools", model)
    assert len(tools["calls"]) == 1 and isinstance(tools["calls"][0], str)
    assert tools["steps"] == 2 and tools["text"]
    made = ai_sdk(node_dir, offline, provider, "object", model)["object"]
    assert (
        set(made) == {"city", "sunny"} and isinstance(made["city"], str) and isinstance(made["sunny"], bool)
    )
