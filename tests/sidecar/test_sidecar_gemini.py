"""Gemini connections through the real sidecar: OpenAI-format requests from the openai SDK,
translated to generateContent / streamGenerateContent, the key only in ``x-goog-api-key``."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from openai import OpenAI

from tests.sidecar.conftest import GEMINI, GEMINI_KEY
from tests.support.fakes import DEFAULT_TEXT, FakeUsage
from tests.support.sidecar_harness import genai_micro_usd, ledger_entries, wait_until

APP_KEY = "sluicegate-placeholder-app-key"


def client(sidecar) -> OpenAI:
    return OpenAI(base_url=sidecar.base_url, api_key=APP_KEY, max_retries=0)


def assert_key_only_in_the_goog_header(fake) -> None:
    assert fake.requests
    for sent in fake.requests:
        assert sent.headers.get("x-goog-api-key") == GEMINI_KEY
        assert "key" not in sent.query  # never in the URL, where logs and proxies would keep it
        assert "authorization" not in sent.headers
        assert APP_KEY not in json.dumps(sent.headers) and APP_KEY.encode() not in sent.body
        assert not any(h.startswith(("x-sluicegate-", "x-portkey-")) for h in sent.headers)


def test_chat_is_translated_to_generate_content_and_priced(gateway, gemini_up) -> None:
    gemini_up.usage = FakeUsage(2000, 30, cached_tokens=500)
    raw = client(gateway).chat.completions.with_raw_response.create(
        model=f"gemini/{GEMINI}",
        max_tokens=64,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 2000 and completion.usage.completion_tokens == 30
    assert raw.headers["x-sluicegate-routed-model"] == f"gemini/{GEMINI}"
    expected = genai_micro_usd(FakeUsage(2000, 30, cached_tokens=500), GEMINI, "google")
    assert Decimal(raw.headers["x-sluicegate-cost-usd"]) * 1_000_000 == pytest.approx(expected, abs=1)
    sent = gemini_up.last_request
    assert sent.path == f"/v1beta/models/{GEMINI}:generateContent"
    assert sent.json["generationConfig"]["maxOutputTokens"] == 64
    assert sent.json["contents"][0]["parts"] == [{"text": "Say hello"}]
    assert_key_only_in_the_goog_header(gemini_up)


def test_streamed_chat_uses_sse_ends_properly_and_is_charged_exactly(gateway, gemini_up) -> None:
    gemini_up.usage = FakeUsage(300, 12)
    response = client(gateway).chat.completions.with_raw_response.create(
        model=GEMINI,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    sent = gemini_up.last_request
    assert sent.path == f"/v1beta/models/{GEMINI}:streamGenerateContent" and sent.query == {"alt": "sse"}
    assert_key_only_in_the_goog_header(gemini_up)
    request_id = response.headers["x-request-id"]
    entry = wait_until(
        lambda: next((e for e in ledger_entries(gateway) if e["requestId"] == request_id), None)
    )
    assert entry["status"] == 200 and entry["costBasis"] == "exact"
    assert entry["costMicroUSD"] == pytest.approx(
        genai_micro_usd(FakeUsage(300, 12), GEMINI, "google"), abs=1
    )


def test_tool_calls_come_back_in_the_openai_shape(gateway, gemini_up) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
    completion = client(gateway).chat.completions.create(
        model=GEMINI, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[tool]
    )
    declared = gemini_up.last_request.json["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "get_weather"
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "location": "Paris"
    }


def test_an_invalid_gemini_key_is_an_auth_failure_that_falls_back_and_benches_the_key(
    tmp_path, gemini_up, openai_up
) -> None:
    # Google answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID, not 401 (fault 12).
    from tests.sidecar.conftest import OPENAI_KEY
    from tests.support.sidecar_harness import SidecarThread, connection, render_dir, tier

    revoked = "AIzaSy-revoked-gemini-key-wxyz"
    config = render_dir(
        tmp_path / "cfg",
        [
            connection("gemini", "gemini", [GEMINI], base_url=gemini_up.root_url, key=revoked),
            connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
            tier("chain", 10, [("gemini", GEMINI), ("openai", "gpt-4o-mini")], strategy="ordered"),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        first = client(sc).chat.completions.with_raw_response.create(
            model="tier:chain", messages=[{"role": "user", "content": "hi"}]
        )
        assert first.headers["x-sluicegate-fallbacks"] == f"1; gemini/{GEMINI}=auth"
        assert first.parse().choices[0].message.content == DEFAULT_TEXT
        client(sc).chat.completions.create(model="tier:chain", messages=[{"role": "user", "content": "hi"}])
        assert len(gemini_up.requests) == 1 and len(openai_up.requests) == 2
        import httpx

        pinned = httpx.post(
            f"{sc.base_url}/chat/completions",
            json={"model": f"gemini/{GEMINI}", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert pinned.status_code == 503 and "wxyz" not in pinned.text
