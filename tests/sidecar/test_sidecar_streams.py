"""Streams that fail after their first byte (faults 8, 10): the client sees what was relayed and then an
error event, never a clean end; nothing falls back; what was streamed is charged."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from sluicegate_sidecar.ledger import writer
from tests.sidecar.conftest import ANTHROPIC_KEY, CLAUDE, GEMINI, GEMINI_KEY, OPENAI_KEY, reset_fake
from tests.support.fakes import FakeOpenAI, Fault
from tests.support.sidecar_harness import (
    SidecarThread,
    connection,
    ledger_entries,
    render_dir,
    tier,
    wait_until,
)

FAST = {"connectSeconds": 0.5, "firstByteSeconds": 0.5, "idleSeconds": 0.5, "totalSeconds": 10}
APP_KEY = "sluicegate-placeholder-app-key"


@pytest.fixture(scope="module")
def module_backup() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def backup(module_backup: FakeOpenAI) -> FakeOpenAI:
    return reset_fake(module_backup)  # type: ignore[return-value]


@pytest.fixture
def sidecar(tmp_path: Path, openai_up, anthropic_up, gemini_up, backup) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "cfg",
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY, timeouts=FAST),
            connection("backup", "openai", ["gpt-4o-mini"], base_url=backup.base_url, timeouts=FAST),
            connection("anthropic", "anthropic", [CLAUDE], base_url=anthropic_up.root_url, key=ANTHROPIC_KEY, timeouts=FAST),
            connection("gemini", "gemini", [GEMINI], base_url=gemini_up.root_url, key=GEMINI_KEY, timeouts=FAST),
            tier("chain", 10, [("openai", "gpt-4o-mini"), ("backup", "gpt-4o-mini")], strategy="ordered"),
        ],
    )  # fmt: skip
    with SidecarThread(config, tmp_path / "ledger") as sc:
        yield sc


def sse_events(sidecar: SidecarThread, model: str) -> tuple[httpx.Response, list[Any]]:
    """POST a streamed chat and return the response and its decoded ``data:`` events."""
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": True}
    with httpx.stream("POST", f"{sidecar.base_url}/chat/completions", json=body, timeout=10) as response:
        raw = response.read().decode()
    events = []
    for block in raw.split("\n\n"):
        data = "".join(line[6:] for line in block.splitlines() if line.startswith("data: "))
        if data:
            events.append(data if data == "[DONE]" else json.loads(data))
    return response, events


def entry_for(sidecar: SidecarThread, request_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: next((e for e in ledger_entries(sidecar) if e["requestId"] == request_id), None)
    )


def test_a_stream_that_stalls_after_three_chunks_ends_with_a_timeout_event_and_no_fallback(
    sidecar, openai_up, backup
) -> None:
    openai_up.script([Fault.stream_hang(3, seconds=3)])
    response, events = sse_events(sidecar, "tier:chain")
    assert response.status_code == 200
    assert len(events) == 4 and all("choices" in e for e in events[:3])
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:3]) == "Hello from"
    assert events[-1]["error"]["code"] == "upstream_stream_timeout"
    assert "[DONE]" not in events
    assert backup.requests == []
    entry = entry_for(sidecar, response.headers["x-request-id"])
    assert entry["status"] == "upstream_stream_timeout"
    assert entry["costBasis"] in ("estimated", "exact") and entry["costMicroUSD"] > 0


@pytest.mark.parametrize(
    "fault", [Fault.stream_hang(3, seconds=3), Fault.stream_reset(5)], ids=["stall", "reset"]
)
def test_a_cut_stream_is_durably_in_the_ledger_before_its_error_event_leaves(
    tmp_path: Path, openai_up, monkeypatch: pytest.MonkeyPatch, fault
) -> None:
    """Ledger before reply holds for a cut stream too (``--ledger-sync``: the line is fdatasynced
    before the error event, the stream's last byte, leaves), as it does for a terminator."""
    synced: list[float] = []
    sync_files = writer._sync_files

    def slow_sync(*args: Any) -> None:  # a slow disk: each fdatasync takes 0.4 s
        time.sleep(0.4)
        sync_files(*args)
        synced.append(time.monotonic())

    monkeypatch.setattr(writer, "_sync_files", slow_sync)
    config = render_dir(
        tmp_path / "cfg",
        [
            connection(
                "openai",
                "openai",
                ["gpt-4o-mini"],
                base_url=openai_up.base_url,
                key=OPENAI_KEY,
                timeouts=FAST,
            )
        ],
    )
    openai_up.script([fault])
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "stream": True}
    errors_at: list[float] = []
    with SidecarThread(config, tmp_path / "ledger", ledger_sync=True) as sidecar:
        with httpx.stream("POST", f"{sidecar.base_url}/chat/completions", json=body, timeout=10) as response:
            rid = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data: ") and '"error"' in line:
                    errors_at.append(time.monotonic())
        [entry] = [e for e in ledger_entries(sidecar) if e["requestId"] == rid]
    assert entry["status"] in ("upstream_stream_timeout", "upstream_stream_error")
    assert len(errors_at) == 1 and synced
    assert synced[0] <= errors_at[0]  # the line was on disk before the client had the error event


# Five chunks hold text from each provider (Anthropic's first three events carry none).
@pytest.mark.parametrize(
    "fault", [Fault.stream_reset(5), Fault.stream_truncate(5)], ids=["reset", "truncate"]
)
@pytest.mark.parametrize("model", ["tier:chain", f"anthropic/{CLAUDE}", f"gemini/{GEMINI}"])
def test_the_openai_sdk_raises_on_a_stream_cut_mid_way_and_what_was_streamed_is_charged(
    sidecar, openai_up, anthropic_up, gemini_up, backup, fault, model
) -> None:
    for fake in (openai_up, anthropic_up, gemini_up):
        fake.script([fault])
    client = sidecar.keep(openai.OpenAI(base_url=sidecar.base_url, api_key=APP_KEY, max_retries=0))
    response = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in response.parse():
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received).startswith("Hello")
    assert backup.requests == []
    entry = entry_for(sidecar, response.headers["x-request-id"])
    assert entry["status"] == "upstream_stream_error"
    assert entry["costBasis"] in ("estimated", "exact") and entry["costMicroUSD"] > 0


@pytest.mark.parametrize(
    "fault", [Fault.stream_reset(3), Fault.stream_truncate(3)], ids=["reset", "truncate"]
)
def test_the_anthropic_sdk_raises_on_a_messages_stream_cut_mid_way(sidecar, anthropic_up, fault) -> None:
    anthropic_up.script([fault])
    client = sidecar.keep(anthropic.Anthropic(base_url=sidecar.root_url, api_key=APP_KEY, max_retries=0))
    stream = client.messages.stream(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIError), stream as events:  # noqa: PT012
        for _ in events.text_stream:
            pass
        events.get_final_message()


def test_an_in_stream_provider_error_ends_the_client_stream_with_an_error(sidecar, openai_up, backup) -> None:
    openai_up.script([Fault.stream_error(3, "Overloaded")])
    response, events = sse_events(sidecar, "tier:chain")
    assert "error" in events[-1] and "[DONE]" not in events
    assert backup.requests == []


@pytest.mark.parametrize("model", [CLAUDE, GEMINI])
def test_a_cut_stream_is_charged_for_the_output_seen_not_the_opening_usage(
    sidecar, anthropic_up, gemini_up, model
) -> None:
    # Anthropic's message_start reports 1 output token, Gemini's partial chunks none: after eight
    # events the client has seen several words, and those are what is charged.
    anthropic_up.script([Fault.stream_truncate(8)])
    gemini_up.script([Fault.stream_truncate(8)])
    client = sidecar.keep(openai.OpenAI(base_url=sidecar.base_url, api_key=APP_KEY, max_retries=0))
    response = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in response.parse():
            received.extend(c.delta.content or "" for c in chunk.choices)
    words = len("".join(received).split())
    assert words >= 5
    entry = entry_for(sidecar, response.headers["x-request-id"])
    assert entry["costBasis"] == "estimated"
    assert entry["usage"]["output"] >= words


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.stream_hang(0, seconds=3), "timeout"),
        (Fault.stream_reset(0), "bad_response"),
        (Fault.stream_truncate(0), "bad_response"),
    ],
    ids=["silent-after-headers", "reset-after-headers", "empty-body"],
)
def test_a_stream_that_fails_before_its_first_byte_still_falls_back(
    sidecar, openai_up, backup, fault, reason
) -> None:
    openai_up.script([fault])
    response, events = sse_events(sidecar, "tier:chain")
    assert response.status_code == 200
    assert events[-1] == "[DONE]" and not any("error" in e for e in events if isinstance(e, dict))
    assert len(openai_up.requests) == 1 and len(backup.requests) == 1
    assert response.headers["x-sluicegate-fallbacks"] == f"1; openai/gpt-4o-mini={reason}"
