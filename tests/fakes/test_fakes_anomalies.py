"""The fakes' misbehaving modes (fault 30) speak each provider's wire format: an endless stream is a
run of the provider's own content events read by its SDK, a bad usage object sits where the provider
puts its usage, and an over-cap reply is a normal reply longer than the cap it was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, Fault


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


def test_an_endless_openai_stream_is_chunks_the_sdk_reads_past_the_cap(fake_openai: FakeOpenAI) -> None:
    fake_openai.script([Fault.endless()])
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True
    )
    pieces = []
    for chunk in stream:
        pieces.extend(c.delta.content or "" for c in chunk.choices)
        if len(pieces) > 50:
            break
    stream.close()
    assert len(pieces) > 50 and "".join(pieces).startswith("And")


def test_an_endless_anthropic_stream_is_content_block_deltas(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script([Fault.endless()])
    client = anthropic.Anthropic(base_url=fake_anthropic.root_url, api_key="k", max_retries=0)
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=2, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        texts = []
        for text in stream.text_stream:
            texts.append(text)
            if len(texts) > 50:
                break
    assert len(texts) > 50


def test_an_endless_gemini_stream_is_generate_content_frames(fake_gemini: FakeGemini) -> None:
    fake_gemini.script([Fault.endless()])
    url = f"{fake_gemini.root_url}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"maxOutputTokens": 2},
    }
    frames = []
    with httpx.stream("POST", url, json=body, timeout=5) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line[6:]))
            if len(frames) > 50:
                break
    assert all(f["candidates"][0]["content"]["parts"][0]["text"] for f in frames)
    assert not any("finishReason" in f["candidates"][0] for f in frames)


@pytest.mark.parametrize("raw", [{"prompt_tokens": -1, "completion_tokens": "7"}, None, "lots"])
def test_a_bad_openai_usage_object_is_sent_verbatim(fake_openai: FakeOpenAI, raw: object) -> None:
    fake_openai.script([Fault.bad_usage(raw)])
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{fake_openai.base_url}/chat/completions", json=body, timeout=5).json()
    assert reply["usage"] == raw and reply["choices"][0]["message"]["content"]


def test_a_bad_anthropic_usage_is_in_message_start_and_message_delta(fake_anthropic: FakeAnthropic) -> None:
    raw = {"input_tokens": -3, "output_tokens": 10**12}
    fake_anthropic.script([Fault.bad_usage(raw)])
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"anthropic-version": "2023-06-01"}
    text = httpx.post(f"{fake_anthropic.root_url}/v1/messages", json=body, headers=headers, timeout=5).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    start = next(e for e in events if e["type"] == "message_start")
    delta = next(e for e in events if e["type"] == "message_delta")
    assert start["message"]["usage"] == raw and delta["usage"] == raw


def test_an_over_cap_gemini_reply_ignores_max_output_tokens(fake_gemini: FakeGemini) -> None:
    fake_gemini.script([Fault.over_cap()])
    url = f"{fake_gemini.root_url}/v1beta/models/gemini-2.0-flash:generateContent"
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"maxOutputTokens": 2},
    }
    reply = httpx.post(url, json=body, timeout=5).json()
    assert reply["candidates"][0]["finishReason"] == "STOP"
    assert reply["usageMetadata"]["candidatesTokenCount"] > 2
