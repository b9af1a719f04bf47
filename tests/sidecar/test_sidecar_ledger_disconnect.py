"""A client that hangs up mid-stream (fault 6): the reservation is settled, never leaked, and what
was streamed is charged and written to the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect

from sluicegate_sidecar.app import build_api
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    priced,
    prompt_of,
    render_dir,
    tier,
    wait_for,
)

LONG_ANSWER = " ".join(f"w{i}" for i in range(400))  # 400 chunks, 20 ms apart: 8 s if read to the end


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[SidecarThread, FakeOpenAI]]:
    with FakeOpenAI(text=LONG_ANSWER, chunk_delay=0.02) as fake:
        config = render_dir(
            tmp_path / "config",
            [
                connection("openai", "openai", [priced("m-prem", 20, 40)], base_url=fake.base_url),
                tier("premium", 20, [("openai", "m-prem")]),
                budget("daily", 5.0),
            ],
        )
        with SidecarThread(config, tmp_path / "ledger", access_log=False) as sc:
            yield sc, fake


def body() -> dict[str, object]:
    return {"model": "tier:premium", "messages": prompt_of(100), "max_tokens": 1000, "stream": True}


def test_a_client_that_disconnects_mid_stream_is_charged_and_its_reservation_settled(sidecar) -> None:
    sc, _ = sidecar
    book = sc.gateway.budgets
    client = httpx.Client(timeout=10)
    with client, client.stream("POST", f"{sc.base_url}/chat/completions", json=body()) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        next(chunks), next(chunks)
        assert book.outstanding == 1
    # leaving the block closed the connection with most of the answer unread
    wait_for(lambda: book.outstanding == 0, timeout=3)
    sc.run_sync(sc.gateway.ledger.flush())
    [entry] = wait_for(lambda: ledger_lines(sc.ledger_dir))
    assert entry["status"] == "client_disconnect"
    assert entry["costBasis"] == "estimated" and entry["costMicroUSD"] > 0
    worst_case = 100 * 20 + 1000 * 40  # micro-USD reserved: 100 prompt tokens, 1,000 output tokens
    assert entry["costMicroUSD"] < worst_case  # charged for what was streamed, not the whole cap
    assert sc.gateway.drain.inflight == 0


async def hang_up_at_once(sc: SidecarThread, spec_version: str) -> list[str]:
    """Drive the API app on the sidecar's loop with a client that is gone as soon as its request is
    in. ASGI 2.3 servers report it to ``receive``; 2.4 servers make ``send`` raise ``OSError`` (then
    the streamed body is never started)."""
    app = build_api(sc.gateway)
    messages = [{"type": "http.request", "body": json.dumps(body()).encode(), "more_body": False}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if spec_version == "2.4":
            raise OSError("the client went away")
        sent.append(message["type"])

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", sc.port),
    }  # fmt: skip
    try:
        await app(scope, receive, send)
    except ClientDisconnect:
        pass
    return sent


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_client_gone_at_once_leaks_no_reservation(sidecar, spec_version) -> None:
    sc, fake = sidecar
    book = sc.gateway.budgets
    sent = sc.run_sync(hang_up_at_once(sc, spec_version))
    assert sent.count("http.response.body") <= 1  # at most the first chunk went out
    assert len(fake.requests) == 1  # the upstream was called (and reserved for)
    assert book.outstanding == 0  # settled when the response ended, not at garbage collection
    assert sc.gateway.drain.inflight == 0
    sc.run_sync(sc.gateway.ledger.flush())
    [entry] = wait_for(lambda: ledger_lines(sc.ledger_dir))
    assert entry["status"] == "client_disconnect" and entry["costMicroUSD"] > 0
