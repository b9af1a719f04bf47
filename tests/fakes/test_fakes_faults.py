"""The fake providers fail as scripted: status faults in each provider's error format, unparseable
bodies, hangs, resets and cut streams, and they stop promptly."""

from __future__ import annotations

import json
import threading
import time

import anthropic
import httpx
import pytest

from tests.support.fakes import (
    DEFAULT_TEXT,
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakeUsage,
    Fault,
    closed_port,
)
from tests.support.wirecheck import (
    ANTHROPIC_HEADERS,
    CHAT,
    GEMINI,
    MESSAGES,
    anthropic_client,
    openai_client,
    post,
    sse_data,
)

# -- Faults -----------------------------------------------------------------------------------------

FAKES = {
    "openai": (FakeOpenAI, "/v1/chat/completions", CHAT, {}),
    "anthropic": (FakeAnthropic, "/v1/messages", MESSAGES, {"anthropic-version": "2023-06-01"}),
    "gemini": (FakeGemini, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", GEMINI, {}),
}
ERROR_SHAPES = {
    "openai": lambda e: set(e["error"]) == {"message", "type", "param", "code"},
    "anthropic": lambda e: e["type"] == "error" and set(e["error"]) == {"type", "message"},
    "gemini": lambda e: set(e["error"]) == {"code", "message", "status"} and e["error"]["code"] == 429,
}


def stream_body(name: str) -> dict:
    return FAKES[name][2] | ({} if name == "gemini" else {"stream": True})


@pytest.mark.parametrize("name", FAKES)
def test_status_faults_use_the_providers_error_format_and_headers(name):
    kind, path, body, headers = FAKES[name]
    with kind() as fake:
        fake.script([Fault.status(429, headers={"retry-after": "2"}), Fault.status(500, body=b"oops")])
        limited = post(fake, path, body, headers)
        broken = post(fake, path, body, headers)
        fine = post(fake, path, body, headers)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert ERROR_SHAPES[name](limited.json())
    assert broken.status_code == 500 and broken.content == b"oops"
    assert fine.status_code == 200 and len(fake.requests) == 3


def test_html_and_invalid_json_faults_answer_200_with_unparseable_bodies(fake_openai):
    fake_openai.script([Fault.html(), Fault.invalid_json()])
    with openai_client(fake_openai) as client:
        html = client.chat.completions.with_raw_response.create(model="m", messages=CHAT["messages"])
        with pytest.raises(json.JSONDecodeError):
            client.chat.completions.create(model="m", messages=CHAT["messages"])
    assert html.http_response.status_code == 200
    assert html.headers["content-type"] == "text/html" and html.http_response.text.startswith("<html>")
    assert fake_openai.last_usage is None


def test_hang_fault_triggers_an_httpx_timeout_and_then_replies_normally(fake_openai):
    fake_openai.script([Fault.hang(5), Fault.hang(0.2)])
    headers = {"authorization": "Bearer sk-test"}
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        post(fake_openai, "/v1/chat/completions", CHAT, headers, timeout=httpx.Timeout(5, read=0.2))
    assert time.monotonic() - started < 2
    started = time.monotonic()
    slow = post(fake_openai, "/v1/chat/completions", CHAT, headers)
    assert slow.status_code == 200 and time.monotonic() - started >= 0.2


def test_reset_fault_raises_a_connection_error_in_httpx(fake_openai):
    fake_openai.script([Fault.reset()])
    with pytest.raises(httpx.ReadError):
        post(fake_openai, "/v1/chat/completions", CHAT)
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("name", FAKES)
def test_stream_hang_sends_some_chunks_then_times_out(name):
    kind, path, _, headers = FAKES[name]
    with kind() as fake, httpx.Client(timeout=httpx.Timeout(5, read=0.3)) as client:
        fake.script([Fault.stream_hang(after=2)])
        received = []
        with (
            pytest.raises(httpx.ReadTimeout),
            client.stream("POST", fake.root_url + path, json=stream_body(name), headers=headers) as response,
        ):
            for chunk in response.iter_raw():
                received.append(chunk)
    assert b"".join(received).count(b"data: ") == 2


@pytest.mark.parametrize("name", FAKES)
def test_stream_truncate_ends_cleanly_without_the_terminal_event(name):
    kind, path, _, headers = FAKES[name]
    with kind() as fake:
        fake.script([Fault.stream_truncate(after=3)])
        body = post(fake, path, stream_body(name), headers).content
    assert body.count(b"data: ") == 3
    assert b"[DONE]" not in body and b"message_stop" not in body and b"finishReason" not in body
    assert fake.last_usage is None


def test_stream_reset_breaks_the_connection_mid_stream(fake_anthropic):
    fake_anthropic.script([Fault.stream_reset(after=2)])
    received = []
    with (
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        httpx.stream(
            "POST",
            fake_anthropic.root_url + "/v1/messages",
            json=stream_body("anthropic"),
            headers=ANTHROPIC_HEADERS,
        ) as response,
    ):
        for chunk in response.iter_raw():
            received.append(chunk)
    assert b"".join(received).count(b"event: ") == 2


def test_stream_error_sends_the_providers_error_event(fake_anthropic, fake_openai):
    fake_anthropic.script([Fault.stream_error(after=1, message="Overloaded")])
    client = anthropic_client(fake_anthropic)
    with (
        client,
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(**MESSAGES) as s,
    ):
        s.get_final_message()
    fake_openai.script([Fault.stream_error(after=2, message="Stream broke")])
    body = post(
        fake_openai, "/v1/chat/completions", stream_body("openai"), {"authorization": "Bearer sk-test"}
    )
    last = json.loads(sse_data(body.content)[-1])
    assert last == {"error": {"message": "Stream broke", "type": "server_error", "param": None, "code": None}}


def test_last_usage_follows_complete_successful_replies_only(fake_openai):
    headers = {"authorization": "Bearer sk-test"}
    assert fake_openai.last_usage is None
    fake_openai.script([Fault.ok(usage=FakeUsage(5, 6)), Fault.status(503)])
    post(fake_openai, "/v1/chat/completions", CHAT, headers)
    post(fake_openai, "/v1/chat/completions", CHAT, headers)
    assert fake_openai.last_usage == FakeUsage(5, 6)
    post(fake_openai, "/v1/chat/completions", CHAT, headers)  # the default usage: estimated
    assert fake_openai.last_usage.output_tokens == len(DEFAULT_TEXT.split())
    assert fake_openai.last_usage.as_usage().input_tokens == fake_openai.last_usage.input_tokens > 0


def test_ok_fault_can_override_text_and_chunk_delay_spaces_the_stream(fake_openai):
    fake_openai.chunk_delay = 0.05
    fake_openai.script([Fault.ok(text="one two")])
    started = time.monotonic()
    body = post(
        fake_openai, "/v1/chat/completions", stream_body("openai"), {"authorization": "Bearer sk-test"}
    )
    content = "".join(
        json.loads(f)["choices"][0]["delta"].get("content") or "" for f in sse_data(body.content)[:-1]
    )
    assert content == "one two" and time.monotonic() - started >= 3 * 0.05


def test_closed_port_refuses_connections():
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{closed_port()}/v1/models")


def test_a_fake_stops_promptly_and_leaves_no_thread_even_while_a_request_hangs():
    before = threading.active_count()
    with FakeOpenAI() as fake:
        fake.script([Fault.hang(30)])
        outcome: list[object] = []
        caller = threading.Thread(target=lambda: outcome.append(_call_ignoring_errors(fake)))
        caller.start()
        while not fake.requests:
            time.sleep(0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    caller.join(5)
    assert threading.active_count() == before and isinstance(outcome[0], httpx.TransportError)


def _call_ignoring_errors(fake: FakeOpenAI) -> object:
    try:
        return post(fake, "/v1/chat/completions", CHAT)
    except httpx.TransportError as error:
        return error
