"""What the fake providers' wire tests share: request bodies, SDK clients on a fake, frame parsers."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai

from tests.support.fakes import FakeAnthropic, FakeOpenAI, FakeUsage

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
GEMINI_PATH = "/v1beta/models/gemini-2.5-flash:"
ANTHROPIC_HEADERS = {"x-api-key": "ak", "anthropic-version": "2023-06-01"}
CACHED = FakeUsage(input_tokens=1000, output_tokens=40, cached_tokens=300, cache_write_tokens=100)
WEATHER = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}


def openai_client(fake: FakeOpenAI) -> openai.OpenAI:
    return fake.keep(openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0))


def anthropic_client(fake: FakeAnthropic) -> anthropic.Anthropic:
    return fake.keep(anthropic.Anthropic(base_url=fake.base_url, api_key="ak", max_retries=0))


def sse_data(body: bytes, separator: bytes = b"\n\n") -> list[bytes]:
    frames = [f for f in body.split(separator) if f]
    assert all(f.startswith(b"data: ") for f in frames), frames
    return [f.removeprefix(b"data: ") for f in frames]


def anthropic_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in body.decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n")
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def post(
    fake: Any, path: str, body: dict[str, Any], headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    return httpx.post(fake.root_url + path, json=body, headers=headers or {}, **kwargs)
