"""The real openai SDK against the sidecar, with a fake OpenAI upstream behind it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from genai_prices import calc_price
from openai import AsyncOpenAI, OpenAI

from tests.sidecar.conftest import CLAUDE, OPENAI_KEY
from tests.support.fakes import DEFAULT_TEXT, FakeUsage, Fault

APP_KEY = "sk-app-placeholder-must-not-travel"


def genai_micro(usage: FakeUsage, model: str, provider: str) -> int:
    price = calc_price(usage.as_genai_usage(), model, provider_id=provider).total_price
    return int((price * 1_000_000).to_integral_value(rounding="ROUND_CEILING"))


def client(sidecar) -> OpenAI:
    return sidecar.keep(OpenAI(base_url=sidecar.base_url, api_key=APP_KEY, max_retries=0))


def test_chat_completion_is_served_priced_and_attributed(sidecar, fake_openai) -> None:
    fake_openai.script([Fault.ok(usage=FakeUsage(1200, 80, cached_tokens=200))])
    raw = client(sidecar).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello"}],
        extra_headers={"X-Sluicegate-Team": "payments"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert raw.headers["x-sluicegate-routed-model"] == "openai/gpt-4o-mini"
    expected = genai_micro(FakeUsage(1200, 80, cached_tokens=200), "gpt-4o-mini", "openai")
    assert Decimal(raw.headers["x-sluicegate-cost-usd"]) * 1_000_000 == pytest.approx(expected, abs=1)
    sent = fake_openai.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.json["model"] == "gpt-4o-mini"
    assert not any(h.startswith("x-sluicegate-") for h in sent.headers)


def test_streaming_chat_relays_every_chunk_and_charges_the_reported_usage(sidecar, fake_openai) -> None:
    fake_openai.script([Fault.ok(usage=FakeUsage(50, 9))])
    stream = client(sidecar).chat.completions.create(
        model="tier:standard", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == DEFAULT_TEXT
    sent = fake_openai.requests[-1].json
    assert sent["stream_options"] == {"include_usage": True}
    sidecar.run_sync(sidecar.gateway.ledger.flush())
    entries = ledger_entries(sidecar)
    assert entries[-1]["costBasis"] == "exact"
    assert entries[-1]["costMicroUSD"] == genai_micro(FakeUsage(50, 9), "gpt-4o-mini", "openai")


def test_client_that_asks_for_usage_gets_the_usage_chunk_and_one_that_does_not_does_not(sidecar) -> None:
    c = client(sidecar)
    with_usage = list(
        c.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].usage is not None and with_usage[-1].choices == []
    without = list(
        c.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(chunk.choices for chunk in without)


def test_async_client_streams_and_completes_concurrently(sidecar) -> None:
    async def run() -> list[str]:
        async with AsyncOpenAI(base_url=sidecar.base_url, api_key=APP_KEY, max_retries=0) as ac:

            async def one(i: int) -> str:
                stream = await ac.chat.completions.create(
                    model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}], stream=True
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            plain = await ac.chat.completions.create(
                model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
            streamed = await asyncio.gather(*(one(i) for i in range(8)))
            return [plain.choices[0].message.content or "", *streamed]

    results = asyncio.run(run())
    assert results == [DEFAULT_TEXT] * 9


def test_embeddings_and_completions_pass_through(sidecar) -> None:
    c = client(sidecar)
    emb = c.embeddings.create(model="openai/text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2
    comp = c.completions.create(model="openai/gpt-4o-mini", prompt="Once upon")
    assert comp.choices[0].text


def test_models_lists_tiers_auto_and_pinned_models(sidecar) -> None:
    ids = {m.id for m in client(sidecar).models.list()}
    assert {"auto", "tier:standard", "openai/gpt-4o-mini", f"anthropic/{CLAUDE}"} <= ids


def test_unknown_model_is_a_404_in_the_openai_envelope(sidecar) -> None:
    r = httpx.post(
        f"{sidecar.base_url}/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_a_wrong_method_is_a_405_in_the_openai_envelope_naming_the_allowed_one(sidecar, fake_openai) -> None:
    chat = httpx.get(f"{sidecar.base_url}/chat/completions")
    assert chat.status_code == 405 and chat.headers["allow"] == "POST"
    assert chat.json()["error"]["code"] == "method_not_allowed"
    models = httpx.post(f"{sidecar.base_url}/models", json={})
    assert models.status_code == 405 and models.headers["allow"] == "GET, HEAD"
    assert models.json()["error"]["code"] == "method_not_allowed"
    messages = httpx.get(f"{sidecar.base_url}/messages")  # Anthropic's route: Anthropic's envelope
    assert messages.status_code == 405 and messages.json()["type"] == "error"
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b'{"model": "auto", "messages": [', "application/json", "bad_json"),
        (b'{"model": "auto", "model": "x", "messages": []}', "application/json", "bad_json"),
        (
            b'{"model": "auto", "temperature": NaN, "messages": [{"role":"user","content":"x"}]}',
            "application/json",
            "bad_json",
        ),
        (b"\xef\xbb\xbf{}", "application/json", "bad_json"),
        (
            b'{"model": "auto", "messages": [{"role":"user","content":"\xff"}]}',
            "application/json",
            "bad_json",
        ),
        (b"[" * 100 + b"]" * 100, "application/json", "bad_json"),
        (b'{"model": "auto", "messages": []}', "text/plain", "bad_content_type"),
    ],
)
def test_malformed_requests_get_400_and_never_reach_the_upstream(
    sidecar, fake_openai, body, content_type, code
) -> None:
    r = httpx.post(
        f"{sidecar.base_url}/chat/completions", content=body, headers={"content-type": content_type}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code
    assert body.decode("latin-1")[:20] not in r.json()["error"]["message"] or len(body) < 3
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"stream": "yes"}, "stream"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"n": 1000}, "n"),
        ({"temperature": "hot"}, "temperature"),
    ],
)
def test_wrong_types_and_values_are_400_naming_the_field(sidecar, fake_openai, patch, param) -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], **patch}
    r = httpx.post(f"{sidecar.base_url}/chat/completions", json=body)
    assert r.status_code == 400 and param in r.json()["error"]["message"]
    assert fake_openai.requests == []


@pytest.mark.parametrize("field", ["api_base", "base_url", "api_key"])
def test_client_supplied_upstream_or_credentials_are_refused(sidecar, fake_openai, field) -> None:
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "x"}],
        field: "http://evil",
    }
    r = httpx.post(f"{sidecar.base_url}/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == field
    assert fake_openai.requests == []


def test_a_body_over_the_limit_is_413_before_it_is_buffered(providers_config, tmp_path) -> None:
    from tests.support.sidecar_harness import SidecarThread

    with SidecarThread(providers_config, tmp_path / "l2", max_body_bytes=1024) as sc:
        big = b'{"model":"auto","messages":[{"role":"user","content":"' + b"a" * 5000 + b'"}]}'
        r = httpx.post(
            f"{sc.base_url}/chat/completions", content=big, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    "path",
    [
        "//v1/chat/completions",
        "/v1/../v1/chat/completions",
        "/v1/chat%2Fcompletions",
        "/v1/chat/completions/",
    ],
)
def test_ambiguous_paths_are_refused(sidecar, path) -> None:
    import socket

    body = b'{"model":"auto","messages":[{"role":"user","content":"x"}]}'
    head = f"POST {path} HTTP/1.1\r\nHost: x/#@evil\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 404"), reply[:80]


def listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":
                found.add(address)
    return found


def test_the_api_listens_on_loopback_only_and_ops_on_all_interfaces(sidecar) -> None:
    assert listening_addresses(sidecar.port) == {"0100007F"}  # 127.0.0.1
    assert listening_addresses(sidecar.ops_port) == {"00000000"}  # 0.0.0.0


def ledger_entries(sidecar) -> list[dict]:
    import json

    lines = []
    for path in sorted(sidecar.ledger_dir.glob("ledger-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


def test_a_client_that_hangs_up_halfway_through_its_body_reaches_no_upstream_and_the_next_is_served(
    sidecar, fake_openai
) -> None:
    import socket

    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        sock.sendall(head.encode() + b'{"model":"auto","messages":[')  # then gone, 970 bytes short
    client = OpenAI(base_url=sidecar.base_url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert len(fake_openai.requests) == 1  # only the complete request went upstream
    assert sidecar.gateway.budgets.outstanding == 0
