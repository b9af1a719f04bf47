"""Upstream HTTP: one aiohttp session per connection (the hot path; httpx types for the mock), and attempts.

An attempt opens the upstream response within the time-to-first-byte limit and classifies what went
wrong; reading the body afterwards is the pipeline's job, under the idle and total deadlines.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from sluicegate_contract.schema import MockSettings, Timeouts

from .providers.base import UpstreamRequest

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
MAX_PARSED_URLS = 4096  # per connection: its base URL times its paths and models, a bounded set


class AttemptFailed(Exception):
    """One attempt's failure: ``kind`` is timeout | connect | http | bad_response."""

    def __init__(
        self,
        kind: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        detail: str = "",
    ) -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.status = status
        self.headers = dict(headers or {})
        self.body = body


class OpenResponse(Protocol):
    """An upstream response whose body is still to be read (``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpResponse:
    """An aiohttp response as an ``OpenResponse``: its body as it arrives, closed as httpx-aiohttp
    closes it (the connection goes back to the pool only when the body was read to its end)."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self._response.headers.items()}

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def aclose(self) -> None:
        await self._response.__aexit__(None, None, None)


class Upstream:
    """One connection's upstream: an httpx transport (aiohttp-backed, or the in-process mock).

    Over an aiohttp transport, requests go to its session directly (``session``); to the mock, as
    ``httpx.Request``s straight to the transport. Either way no client layer: its cookie jar, auth
    flow, redirect handling and URL merging are work the sidecar never wants (the hot path).
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, connect_seconds: float = 5.0) -> None:
        self.transport = transport
        self.extensions = {"timeout": {"connect": connect_seconds, "pool": connect_seconds, "read": None}}
        self._urls: dict[str, tuple[httpx.URL, str]] = {}
        # What the aiohttp transport would pass per request, made once (``fetch_reply``'s direct path).
        self.aiohttp_timeout = aiohttp.ClientTimeout(sock_connect=connect_seconds, connect=connect_seconds)

    def session(self) -> aiohttp.ClientSession | None:
        """The aiohttp session under an aiohttp transport (made on first use, inside the event loop,
        as the transport itself would), None for any other transport (the mock)."""
        transport = self.transport
        if not isinstance(transport, AiohttpTransport):
            return None
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()
        return transport.client

    def url(self, text: str) -> tuple[httpx.URL, str]:
        """``text`` parsed once, with its ``Host`` header: an ``httpx.Request`` built from a parsed URL
        skips httpx's URL parser, which costs more than the rest of building the request."""
        parsed = self._urls.get(text)
        if parsed is None:
            if len(self._urls) >= MAX_PARSED_URLS:
                self._urls.clear()
            url = httpx.URL(text)
            parsed = self._urls[text] = (url, url.netloc.decode("ascii"))
        return parsed

    def request(self, request: UpstreamRequest) -> httpx.Request:
        """``request`` as httpx would build it from ``content=`` (``Host`` first, ``Content-Length``
        last), asking for identity encoding: bytes are relayed as they come, and no gzip bomb can be
        sent (fault 11). Built from a ready stream, the headers are normalised once, not three times."""
        url, host = self.url(request.url)
        body = request.body
        headers = [("Host", host)]
        headers += [item for item in request.headers.items() if item[0].lower() != "accept-encoding"]
        headers.append(("accept-encoding", "identity"))
        if body or request.method in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        outgoing = httpx.Request(
            request.method, url, headers=headers, stream=httpx.ByteStream(body), extensions=self.extensions
        )
        outgoing.read()  # the body is bytes: ``content`` is set, as with ``content=``
        return outgoing

    async def aclose(self) -> None:
        await self.transport.aclose()


def upstream_tls() -> ssl.SSLContext:
    """What every upstream TLS connection verifies with: the system trust store, HTTP/1.1 (as
    aiohttp's default). Built once per process and shared by every connection's transport: each
    ``AiohttpTransport`` would otherwise build (and never use) its own context from certifi's bundle,
    a few hundred milliseconds of start-up and reload and a copy of the CA store in memory apiece."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(("http/1.1",))
    return context


def _aiohttp_session(connect_seconds: float, tls: ssl.SSLContext) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=60, ssl=tls)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_seconds),
        auto_decompress=True,
    )


def build_client(
    provider_kind: str, timeouts: Timeouts, mock: MockSettings | None, tls: ssl.SSLContext
) -> Upstream:
    """The upstream of one connection; the mock provider gets its in-process transport."""
    if provider_kind == "mock":
        # Imported only for a mock connection: its generators are memory every other sidecar would pay.
        from .mock.transport import MockUpstreamTransport

        settings = mock or MockSettings()
        return Upstream(MockUpstreamTransport(settings, settings.seed))
    connect = timeouts.connect_seconds
    return Upstream(AiohttpTransport(verify=tls, client=lambda: _aiohttp_session(connect, tls)), connect)


async def open_response(
    upstream: Upstream, request: UpstreamRequest, first_byte_seconds: float
) -> OpenResponse:
    """Send and wait for the status line; raises ``AttemptFailed`` for anything but a 2xx. Over an
    aiohttp transport, sent on its session directly (as ``fetch_reply`` does)."""
    session = upstream.session()
    headers: Mapping[str, str] | None
    try:
        async with asyncio.timeout(first_byte_seconds):
            if session is not None:
                response: OpenResponse = AiohttpResponse(await _send(session, upstream, request))
                headers = None
            else:
                outgoing = upstream.request(request)
                response = sent = await upstream.transport.handle_async_request(outgoing)
                sent.request = outgoing
                headers = sent.headers
    except TimeoutError:
        raise AttemptFailed("timeout", detail="no response before the first-byte deadline") from None
    except (httpx.TransportError, aiohttp.ClientError, OSError) as exc:
        raise AttemptFailed(_failure_kind(exc), detail=type(exc).__name__) from None
    if 200 <= response.status_code < 300:
        return response
    try:
        async with asyncio.timeout(first_byte_seconds):
            body = await read_capped(response, MAX_ERROR_BYTES)
    except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError):
        body = b""
    finally:
        await response.aclose()
    if headers is None:
        assert isinstance(response, AiohttpResponse)
        headers = response.headers
    raise AttemptFailed("http", status=response.status_code, headers=headers, body=body)


async def fetch_reply(
    upstream: Upstream, request: UpstreamRequest, first_byte_seconds: float, total_seconds: float
) -> bytes | AttemptFailed:
    """A complete (non-streaming) reply's body: the status line within the first-byte limit, then the
    body within the total limit from there, under one deadline object (each asyncio timeout is a timer
    set and cancelled). Raises ``AttemptFailed`` as ``open_response`` does; a body that fails is
    returned, as ``read_body`` would have raised it (the response is closed either way).

    Over an aiohttp transport the request goes to its session directly: the same request on the wire
    (the headers ``Upstream.request`` makes, identity encoding, no redirects), without an
    ``httpx.Request`` and ``httpx.Response`` wrapped around it, which nothing here needs (the hot path).
    """
    session = upstream.session()
    if session is not None:
        return await _fetch_aiohttp(session, upstream, request, first_byte_seconds, total_seconds)
    outgoing = upstream.request(request)
    phase = "open"
    response: httpx.Response | None = None
    try:
        async with asyncio.timeout(first_byte_seconds) as deadline:
            response = await upstream.transport.handle_async_request(outgoing)
            response.request = outgoing
            ok = 200 <= response.status_code < 300
            phase = "body" if ok else "error"
            limit = total_seconds if ok else first_byte_seconds
            deadline.reschedule(asyncio.get_running_loop().time() + limit)
            body = await read_capped(response, MAX_RESPONSE_BYTES if ok else MAX_ERROR_BYTES)
    except TimeoutError:
        if phase == "open":
            raise AttemptFailed("timeout", detail="no response before the first-byte deadline") from None
        if phase == "body":
            return AttemptFailed("timeout", detail="upstream body did not finish in time")
        body = b""
    except (httpx.TransportError, aiohttp.ClientError, OSError) as exc:
        if phase == "open":
            raise AttemptFailed(_failure_kind(exc), detail=type(exc).__name__) from None
        if phase == "body":
            return AttemptFailed("connect", detail=type(exc).__name__)
        body = b""
    except httpx.HTTPError:
        if phase != "error":
            raise
        body = b""
    except AttemptFailed as failure:  # a body over its limit
        if phase != "body":
            raise
        return failure
    finally:
        if response is not None:  # outside the deadline, as ``read_body`` closes it
            await response.aclose()
    assert response is not None
    if phase == "error":
        raise AttemptFailed("http", status=response.status_code, headers=response.headers, body=body)
    return body


async def _fetch_aiohttp(
    session: aiohttp.ClientSession,
    upstream: Upstream,
    request: UpstreamRequest,
    first_byte_seconds: float,
    total_seconds: float,
) -> bytes | AttemptFailed:
    """``fetch_reply`` over an aiohttp session: the same phases, deadlines and outcomes."""
    phase = "open"
    response: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(first_byte_seconds) as deadline:
            response = await _send(session, upstream, request)
            ok = 200 <= response.status < 300
            phase = "body" if ok else "error"
            limit = total_seconds if ok else first_byte_seconds
            deadline.reschedule(asyncio.get_running_loop().time() + limit)
            content = await _read_capped_aiohttp(response, MAX_RESPONSE_BYTES if ok else MAX_ERROR_BYTES)
    except TimeoutError:  # the deadline, or aiohttp's own (connect) timeout
        if phase == "open":
            detail = "no response before the first-byte deadline"
            raise AttemptFailed("timeout", detail=detail) from None
        if phase == "body":
            return AttemptFailed("timeout", detail="upstream body did not finish in time")
        content = b""
    except (aiohttp.ClientError, OSError) as exc:
        if phase == "open":
            raise AttemptFailed("connect", detail=type(exc).__name__) from None
        if phase == "body":
            return AttemptFailed("connect", detail=type(exc).__name__)
        content = b""
    except AttemptFailed as failure:  # a body over its limit
        if phase != "body":
            raise
        return failure
    finally:
        if response is not None:  # as httpx-aiohttp closes it: back to the pool when read to its end
            await response.__aexit__(None, None, None)
    assert response is not None
    if phase == "error":
        errors = {name.lower(): value for name, value in response.headers.items()}
        raise AttemptFailed("http", status=response.status, headers=errors, body=content)
    return content


async def _send(
    session: aiohttp.ClientSession, upstream: Upstream, request: UpstreamRequest
) -> aiohttp.ClientResponse:
    """``request`` on ``session`` as the aiohttp transport would send ``upstream.request(request)``:
    the same headers in the same order, identity encoding, no redirects, no decompression."""
    _, host = upstream.url(request.url)
    body = request.body
    headers = [("Host", host)]
    headers += [item for item in request.headers.items() if item[0].lower() != "accept-encoding"]
    headers.append(("accept-encoding", "identity"))
    if body or request.method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    return await session.request(
        request.method,
        request.url,
        headers=headers,
        data=body or None,
        allow_redirects=False,
        auto_decompress=False,
        compress=False,
        timeout=upstream.aiohttp_timeout,
    )


async def _read_capped_aiohttp(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.readany():
        size += len(chunk)
        if size > limit:
            raise AttemptFailed("bad_response", detail=f"response larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _failure_kind(exc: BaseException) -> str:
    """timeout | connect. httpx-aiohttp maps every aiohttp connection error (refused, reset) to
    ``httpx.ConnectTimeout``: what happened is in ``__cause__``, a timeout only if that is one."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError | OSError):
        return "timeout" if isinstance(cause, TimeoutError) else "connect"
    return "timeout" if isinstance(exc, httpx.TimeoutException) else "connect"


async def read_capped(response: OpenResponse, limit: int) -> bytes:
    """The (decompressed) body up to ``limit`` bytes; more raises ``AttemptFailed('bad_response')``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise AttemptFailed("bad_response", detail=f"response larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(response: OpenResponse, idle_seconds: float, total_seconds: float) -> bytes:
    try:
        async with asyncio.timeout(total_seconds):
            return await read_capped(response, MAX_RESPONSE_BYTES)
    except TimeoutError:
        raise AttemptFailed("timeout", detail="upstream body did not finish in time") from None
    except (httpx.TransportError, aiohttp.ClientError, OSError) as exc:
        raise AttemptFailed("connect", detail=type(exc).__name__) from None
    finally:
        await response.aclose()
