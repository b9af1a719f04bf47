"""The ledger line is in the file before the client holds the whole reply (ledger before reply, docs/architecture.md): a stream's
terminator waits for it (usage arrives before it), and so does a non-streamed body. The upstreams
keep each stream open after its last event, as keep-alive upstreams do (the entry used to be written
only at the upstream's close)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.support.fakes import FakeAnthropic, FakeGemini, FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, connection, ledger_lines, priced, render_dir, tier

LINGER = 0.5  # seconds each fake keeps a streamed body open after its last event
CLAUDE = "claude-haiku-4-5"
GEMINI = "gemini-2.0-flash"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(params=[False, True], ids=["default", "ledger-sync"])
def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SidecarThread]:
    with (
        FakeOpenAI(linger=LINGER) as oai,
        FakeAnthropic(linger=LINGER) as ant,
        FakeGemini(linger=LINGER) as gem,
    ):
        config = render_dir(
            tmp_path / "config",
            [
                connection("openai", "openai-compatible", [priced("gpt-4o-mini")], base_url=oai.base_url),
                connection("anthropic", "anthropic", [priced(CLAUDE)], base_url=ant.root_url),
                connection("gemini", "gemini", [priced(GEMINI)], base_url=gem.root_url),
                tier("standard", 10, [("openai", "gpt-4o-mini")]),
            ],
        )
        with SidecarThread(config, tmp_path / "ledger", ledger_sync=request.param) as sc:
            yield sc


def recorded(sidecar: SidecarThread, rid: str) -> bool:
    """Whether the line for ``rid`` is in the ledger file now (read as another process would)."""
    return any(
        line["requestId"] == rid and line["status"] == 200 for line in ledger_lines(sidecar.ledger_dir)
    )


def openai_stream(sidecar: SidecarThread, model: str, rid: str, seen: Callable[[], bool]) -> list[bool]:
    client = openai.OpenAI(base_url=sidecar.base_url, api_key="app", max_retries=0)
    at_terminator: list[bool] = []
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=MESSAGES, stream=True, extra_headers={"x-request-id": rid}
    ) as response:
        for line in response.iter_lines():
            if line == "data: [DONE]":
                at_terminator.append(seen())
    return at_terminator


@pytest.mark.parametrize("model", ["gpt-4o-mini", GEMINI], ids=["openai", "gemini"])
def test_an_openai_format_stream_sends_done_only_once_its_ledger_line_is_written(
    sidecar: SidecarThread, model: str
) -> None:
    rid = f"done-{model}"
    at_terminator = openai_stream(sidecar, model, rid, lambda: recorded(sidecar, rid))
    assert at_terminator == [True]


def test_an_anthropic_stream_sends_message_stop_only_once_its_ledger_line_is_written(
    sidecar: SidecarThread,
) -> None:
    client = anthropic.Anthropic(base_url=sidecar.root_url, api_key="app", max_retries=0)
    at_terminator: list[bool] = []
    with client.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True, extra_headers={"x-request-id": "stop-1"}
    ) as response:
        for line in response.iter_lines():
            if line == "event: message_stop":
                at_terminator.append(recorded(sidecar, "stop-1"))
    assert at_terminator == [True]


def test_a_non_streamed_reply_arrives_only_once_its_ledger_line_is_written(sidecar: SidecarThread) -> None:
    client = openai.OpenAI(base_url=sidecar.base_url, api_key="app", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-request-id": "whole-1"}
    )
    assert reply.choices[0].message.content and recorded(sidecar, "whole-1")
