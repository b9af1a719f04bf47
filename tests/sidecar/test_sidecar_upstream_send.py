"""What a real connection puts on the wire (``upstream._send``, sent below ``ClientSession.request``):
the same request the session sent, read by a real HTTP server on loopback."""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp.web
import pytest

from sluicegate_sidecar.providers.base import UpstreamRequest
from sluicegate_sidecar.upstream import AiohttpUpstream, AttemptFailed, fetch_reply, upstream_tls
from tests.support.fakes import closed_port

Seen = list[tuple[str, list[tuple[str, str]], bytes, object]]  # target, raw headers in order, body, peer


@asynccontextmanager
async def recording() -> AsyncIterator[tuple[int, Seen]]:
    """A server on loopback that records each request and answers 200 with a small JSON body."""
    seen: Seen = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((request.raw_path, headers, await request.read(), peer))
        return aiohttp.web.Response(body=b'{"ok":true}', content_type="application/json")

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()


async def test_a_request_goes_out_as_the_session_sent_it_and_the_connection_is_reused() -> None:
    upstream = AiohttpUpstream(5.0, upstream_tls())
    body = b'{"model":"m","messages":[]}'
    headers = {
        "authorization": "Bearer sk-test",
        "content-type": "application/json",
        "Accept-Encoding": "gzip",
    }
    try:
        async with recording() as (port, seen):
            url = f"http://127.0.0.1:{port}/v1/chat/completions?api-version=1"
            for _ in range(3):
                reply = await fetch_reply(upstream, UpstreamRequest("POST", url, headers, body), 5.0, 5.0)
                assert reply == b'{"ok":true}'
    finally:
        await upstream.aclose()
    assert len(seen) == 3
    target, sent, received, _ = seen[0]
    assert (target, received) == ("/v1/chat/completions?api-version=1", body)
    # Exactly what ClientSession.request sent for the same call (checked against the code before):
    # Host first, the client's Accept-Encoding replaced by identity, Content-Length after the
    # adapter's headers, then aiohttp's own defaults; no cookie, no chunking.
    python = f"Python/{sys.version_info[0]}.{sys.version_info[1]}"
    assert sent == [
        ("Host", f"127.0.0.1:{port}"),
        ("authorization", "Bearer sk-test"),
        ("content-type", "application/json"),
        ("accept-encoding", "identity"),
        ("Content-Length", str(len(body))),
        ("Accept", "*/*"),
        ("User-Agent", f"{python} aiohttp/{aiohttp.__version__}"),
    ]
    assert all(other == sent for _, other, _, _ in seen[1:])
    assert len({peer for *_, peer in seen}) == 1  # the three went over one pooled connection


async def test_a_base_urls_credentials_go_as_basic_auth_and_never_over_the_keys_header() -> None:
    upstream = AiohttpUpstream(5.0, upstream_tls())
    try:
        async with recording() as (port, seen):
            url = f"http://gw-user:gw-pass@127.0.0.1:{port}/v1/messages"
            keyed = {"x-api-key": "sk-ant-test", "content-type": "application/json"}
            assert await fetch_reply(upstream, UpstreamRequest("POST", url, keyed, b"{}"), 5.0, 5.0)
            bearer = {"authorization": "Bearer sk-test", "content-type": "application/json"}
            # Refused as a failed attempt (its reservation released, the next candidate tried); the
            # session raised a ValueError here, which left the request's reservation held.
            with pytest.raises(AttemptFailed) as failed:
                await fetch_reply(upstream, UpstreamRequest("POST", url, bearer, b"{}"), 5.0, 5.0)
            assert failed.value.kind == "connect" and "credentials" in str(failed.value)
    finally:
        await upstream.aclose()
    assert len(seen) == 1  # the second was never sent: the key would have been replaced
    sent = dict((name.lower(), value) for name, value in seen[0][1])
    assert sent["authorization"] == "Basic " + base64.b64encode(b"gw-user:gw-pass").decode()
    assert sent["host"] == f"127.0.0.1:{port}" and sent["x-api-key"] == "sk-ant-test"


async def test_a_refused_connection_is_a_connect_failure() -> None:
    upstream = AiohttpUpstream(5.0, upstream_tls())
    try:
        request = UpstreamRequest("POST", f"http://127.0.0.1:{closed_port()}/v1/chat/completions", {}, b"{}")
        with pytest.raises(AttemptFailed) as failed:
            await fetch_reply(upstream, request, 5.0, 5.0)
    finally:
        await upstream.aclose()
    assert failed.value.kind == "connect"
