"""fault 5: a co-located process that sends a request body slowly (or never finishes it) gets a 408
within the receive deadline and its connection closed; a slow *response* stream is not cut by it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import DEFAULT_TEXT, FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, connection, metric_value, render_dir, tier

RECEIVE_TIMEOUT = 0.5


@pytest.fixture
def slow_sidecar(tmp_path: Path, openai_up: FakeOpenAI) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
            tier("standard", 10, [("openai", "gpt-4o-mini")]),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger", receive_timeout=RECEIVE_TIMEOUT) as sc:
        yield sc


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (seconds)."""
    started = time.monotonic()
    sock.settimeout(limit)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:  # closed with bytes of ours still unread: a reset, also closed
        pass
    return reply, time.monotonic() - started


def test_a_body_that_stalls_gets_a_408_and_the_connection_is_closed_within_the_deadline(
    slow_sidecar: SidecarThread, openai_up: FakeOpenAI
) -> None:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", slow_sidecar.port), timeout=5) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        for piece in (b'{"mo', b'del":', b' "tier'):  # a few bytes, then nothing more
            sock.sendall(piece)
            time.sleep(0.05)
        reply, _ = read_until_closed(sock, limit=5)  # socket.timeout here means: never closed
        elapsed = time.monotonic() - started

    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), reply[:120]
    body = rest.split(b"\r\n\r\n", 1)[1]
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert RECEIVE_TIMEOUT <= elapsed < RECEIVE_TIMEOUT + 1.5
    assert openai_up.requests == []
    assert metric_value(slow_sidecar, "sluicegate_requests_rejected_total", reason="request_timeout") == 1


def test_a_body_that_trickles_in_byte_by_byte_is_cut_at_the_deadline_not_kept_alive(
    slow_sidecar: SidecarThread, openai_up: FakeOpenAI
) -> None:
    body = json.dumps({"model": "tier:standard", "messages": [{"role": "user", "content": "x" * 200}]})
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", slow_sidecar.port), timeout=5) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        sock.settimeout(0.01)
        reply = b""
        for (
            byte
        ) in body.encode():  # each byte well inside any idle timeout; all of them far past the deadline
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the sidecar closed the connection: stop trickling
                break
            try:
                reply += sock.recv(65536)
            except TimeoutError:
                pass
            if reply or time.monotonic() - started > 5:
                break
            time.sleep(0.02)
        more, _ = read_until_closed(sock, limit=5)
        reply += more
        elapsed = time.monotonic() - started

    assert reply.startswith(b"HTTP/1.1 408"), reply[:120]
    assert elapsed < RECEIVE_TIMEOUT + 1.5
    assert openai_up.requests == []


def test_a_stream_that_takes_longer_than_the_receive_deadline_is_relayed_in_full(
    slow_sidecar: SidecarThread, openai_up: FakeOpenAI
) -> None:
    openai_up.chunk_delay = 0.1  # one chunk per word: the reply takes well over RECEIVE_TIMEOUT
    body = {"model": "tier:standard", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = time.monotonic()
    with httpx.stream("POST", f"{slow_sidecar.base_url}/chat/completions", json=body, timeout=10) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - started > RECEIVE_TIMEOUT * 2
    assert events[-1] == "data: [DONE]"
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in json.loads(event[len("data: ") :]).get("choices", [])
    )
    assert text == DEFAULT_TEXT
    assert not any("error" in json.loads(event[len("data: ") :]) for event in events[:-1])
