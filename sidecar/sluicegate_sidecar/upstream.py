"""Upstream HTTP: one aiohttp session per real connection (the hot path), and attempts.

An attempt opens the upstream response within the time-to-first-byte limit and classifies what went
wrong; reading the body afterwards is the pipeline's job, under the idle and total deadlines. The
offline mock's upstream (``mockupstream``, httpx types) is imported only when a mock connection exists.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Protocol, TypeVar

import aiohttp
from yarl import URL

from .deadlines import Deadline
from .providers.base import UpstreamRequest

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
MAX_PARSED_URLS = 4096  # per connection: its base URL times its paths and models, a bounded set
_DEFAULT_PORTS = {"http": 80, "https": 443}
R = TypeVar("R")
_NO_TRACES: list[aiohttp.tracing.Trace] = []  # read only (only the session appends traces)


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
    """An upstream response whose body is still to be read. Its body raises ``aiohttp.ClientError`` or
    ``OSError`` when the connection breaks (the mock's httpx errors arrive as ``ConnectionError``)."""

    @property
    def status_code(self) -> int: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    """One connection's upstream: ``AiohttpUpstream``, or the offline mock (``mockupstream``)."""

    async def open(self, request: UpstreamRequest, first_byte_seconds: float) -> OpenResponse:
        """Send and wait for the status line; raises ``AttemptFailed`` for anything but a 2xx."""
        ...

    async def fetch(
        self, request: UpstreamRequest, first_byte_seconds: float, total_seconds: float
    ) -> bytes | AttemptFailed:
        """A complete reply's body (see ``fetch_reply``)."""
        ...

    async def aclose(self) -> None: ...


class AiohttpResponse:
    """An aiohttp response as an ``OpenResponse``: its body as it arrives, closed as httpx-aiohttp
    closed it (the connection goes back to the pool only when the body was read to its end)."""

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


class AiohttpUpstream:
    """A real connection's upstream: one aiohttp session, requests sent on it directly. No client
    layer above it (httpx's cookie jar, auth flow, redirect handling and URL merging are work the
    sidecar never wants), and no httpx in the process at all unless a mock connection needs it."""

    def __init__(self, connect_seconds: float, tls: ssl.SSLContext) -> None:
        self._connect_seconds = connect_seconds
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the session's
        self._urls: dict[str, tuple[URL, str]] = {}
        # What each request is sent with, made once.
        self.timeout = aiohttp.ClientTimeout(sock_connect=connect_seconds, connect=connect_seconds)

    def session(self) -> aiohttp.ClientSession:
        """Made on first use, inside the event loop."""
        if self._session is None:
            self._session = _aiohttp_session(self._connect_seconds, self._tls)
            self.loop = asyncio.get_running_loop()
        return self._session

    def url(self, text: str) -> tuple[URL, str]:
        """``text`` parsed once, with its ``Host`` header (see ``host_header``)."""
        parsed = self._urls.get(text)
        if parsed is None:
            if len(self._urls) >= MAX_PARSED_URLS:
                self._urls.clear()
            url = URL(text)
            parsed = self._urls[text] = (url, host_header(url))
        return parsed

    # -- the attempt's phases (``open_over``, ``fetch_over``) over this session --------------------

    errors: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError)  # a broken connection
    body_errors = errors  # what reading an error's body may also raise, and is ignored

    async def open(self, request: UpstreamRequest, first_byte_seconds: float) -> OpenResponse:
        return await open_over(self, request, first_byte_seconds)

    async def fetch(
        self, request: UpstreamRequest, first_byte_seconds: float, total_seconds: float
    ) -> bytes | AttemptFailed:
        """``fetch_reply`` on the session, sent as ``_send`` sends it: no ``httpx.Request`` and
        ``httpx.Response`` wrapped around it, which nothing here needs (the hot path)."""
        return await fetch_over(self, request, first_byte_seconds, total_seconds)

    async def send(self, request: UpstreamRequest) -> aiohttp.ClientResponse:
        return await _send(self, request)

    def status(self, response: aiohttp.ClientResponse) -> int:
        return response.status

    def error_headers(self, response: aiohttp.ClientResponse) -> dict[str, str]:
        return {name.lower(): value for name, value in response.headers.items()}

    async def read(self, response: aiohttp.ClientResponse, limit: int) -> bytes:
        return await _read_capped_aiohttp(response, limit)

    async def close(self, response: aiohttp.ClientResponse) -> None:
        """As httpx-aiohttp closes it: back to the pool when read to its end."""
        await response.__aexit__(None, None, None)

    def opened(self, response: aiohttp.ClientResponse) -> OpenResponse:
        return AiohttpResponse(response)

    def failure_kind(self, exc: BaseException) -> str:
        return _failure_kind(exc)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def host_header(url: URL) -> str:
    """The ``Host`` header httpx sent for ``url`` (its ``netloc``): the host as sent (IDNA, lower
    case, IPv6 in brackets, a trailing dot kept), its port only when not the scheme's default."""
    port = url.explicit_port
    host = url.host_subcomponent or ""
    return host if port is None or port == _DEFAULT_PORTS.get(url.scheme) else f"{host}:{port}"


def upstream_tls() -> ssl.SSLContext:
    """What every upstream TLS connection verifies with: the system trust store, HTTP/1.1 (as
    aiohttp's default). Built once per process and shared by every connection's session, not one
    context (and one copy of the CA store in memory) per connection."""
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


async def open_response(
    upstream: Upstream, request: UpstreamRequest, first_byte_seconds: float
) -> OpenResponse:
    """Send and wait for the status line; raises ``AttemptFailed`` for anything but a 2xx."""
    return await upstream.open(request, first_byte_seconds)


async def fetch_reply(
    upstream: Upstream, request: UpstreamRequest, first_byte_seconds: float, total_seconds: float
) -> bytes | AttemptFailed:
    """A complete (non-streaming) reply's body: the status line within the first-byte limit, then the
    body within the total limit from there, under one ``Deadline`` moved between the two. Raises
    ``AttemptFailed`` as ``open_response`` does; a body that fails is returned, as ``read_body``
    would have raised it (the response is closed either way)."""
    return await upstream.fetch(request, first_byte_seconds, total_seconds)


class Exchange(Protocol[R]):
    """One transport's part in an attempt's phases (``open_over``, ``fetch_over``): sending, a
    response's status, headers and body, closing it, and which of its errors are a broken connection.
    ``AiohttpUpstream`` (real connections) and the mock's ``HttpxUpstream`` are the two."""

    errors: tuple[type[BaseException], ...]
    body_errors: tuple[type[BaseException], ...]

    async def send(self, request: UpstreamRequest) -> R: ...

    def status(self, response: R) -> int: ...

    def error_headers(self, response: R) -> dict[str, str]: ...

    async def read(self, response: R, limit: int) -> bytes: ...

    async def close(self, response: R) -> None: ...

    def opened(self, response: R) -> OpenResponse: ...

    def failure_kind(self, exc: BaseException) -> str: ...


async def open_over(x: Exchange[R], request: UpstreamRequest, first_byte_seconds: float) -> OpenResponse:
    """Send and wait for the status line within the first-byte limit; anything but a 2xx raises
    ``AttemptFailed`` (with what the upstream said, its body read under the same limit)."""
    try:
        with Deadline(first_byte_seconds):
            response = await x.send(request)
    except TimeoutError:
        raise AttemptFailed("timeout", detail="no response before the first-byte deadline") from None
    except x.errors as exc:
        raise AttemptFailed(x.failure_kind(exc), detail=type(exc).__name__) from None
    status = x.status(response)
    if 200 <= status < 300:
        return x.opened(response)
    try:
        with Deadline(first_byte_seconds):
            body = await x.read(response, MAX_ERROR_BYTES)
    except TimeoutError:
        body = b""
    except x.body_errors:
        body = b""
    finally:
        await x.close(response)
    raise AttemptFailed("http", status=status, headers=x.error_headers(response), body=body)


async def fetch_over(
    x: Exchange[R], request: UpstreamRequest, first_byte_seconds: float, total_seconds: float
) -> bytes | AttemptFailed:
    """A complete reply's body (``fetch_reply``): open as ``open_over`` does, then read the body within
    the total limit from there, under one deadline object. A failed open raises; a failed body is
    returned; the response is closed either way, outside the deadline."""
    phase = "open"
    response: R | None = None
    status = 0
    try:
        with Deadline(first_byte_seconds) as deadline:
            response = await x.send(request)
            status = x.status(response)
            ok = 200 <= status < 300
            phase = "body" if ok else "error"
            limit = total_seconds if ok else first_byte_seconds
            deadline.reschedule(asyncio.get_running_loop().time() + limit)
            content = await x.read(response, MAX_RESPONSE_BYTES if ok else MAX_ERROR_BYTES)
    except AttemptFailed as failure:  # a body over its limit
        if phase != "body":
            raise
        return failure
    except TimeoutError:  # the deadline, or the transport's own (connect) timeout
        if phase == "open":
            raise AttemptFailed("timeout", detail="no response before the first-byte deadline") from None
        if phase == "body":
            return AttemptFailed("timeout", detail="upstream body did not finish in time")
        content = b""
    except Exception as exc:
        if phase == "error" and isinstance(exc, x.body_errors):
            content = b""
        elif not isinstance(exc, x.errors):
            raise
        elif phase == "open":
            raise AttemptFailed(x.failure_kind(exc), detail=type(exc).__name__) from None
        else:
            return AttemptFailed("connect", detail=type(exc).__name__)
    finally:
        if response is not None:
            await x.close(response)
    assert response is not None
    if phase == "error":
        raise AttemptFailed("http", status=status, headers=x.error_headers(response), body=content)
    return content


async def _send(upstream: AiohttpUpstream, request: UpstreamRequest) -> aiohttp.ClientResponse:
    """``request`` as httpx-aiohttp sent the ``httpx.Request`` httpx built from ``content=``: ``Host``
    first, ``Content-Length`` last, identity encoding asked for (bytes are relayed as they come, no
    gzip bomb: fault 11), no redirects, no decompression. Sent below ``ClientSession.request``, as its
    inner step does it (a pooled connection, the request written, the status line and headers read):
    the session's wrapping (cookie jar, redirects, auth and proxies from the environment, tracing,
    middlewares, a retry of idempotent methods — every upstream request is a POST —, a total timeout)
    was all off and cost about 6 % of the CPU per request at c=32 (README, "Benchmark"). Its errors are
    the session's: the connector's, ``ConnectionTimeoutError``, ``ClientOSError`` for an ``OSError``."""
    url, host = upstream.url(request.url)
    body = request.body
    headers = [("Host", host)]
    headers += [item for item in request.headers.items() if item[0].lower() != "accept-encoding"]
    headers.append(("accept-encoding", "identity"))
    if body or request.method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    if (url.raw_user or url.raw_password) and any(n.lower() == "authorization" for n, _ in headers):
        # A base URL's credentials go as Basic auth (aiohttp's), never in place of the key's header.
        raise AttemptFailed("connect", detail="base URL credentials beside the key's Authorization")
    session = upstream.session()
    connector = session.connector
    assert connector is not None
    req = aiohttp.ClientRequest(
        request.method, url, headers=headers, data=body or None, loop=upstream.loop,
        response_class=aiohttp.ClientResponse, session=session, compress=False, traces=_NO_TRACES,
    )  # fmt: skip
    try:
        conn = await connector.connect(req, traces=_NO_TRACES, timeout=upstream.timeout)
    except TimeoutError as exc:
        raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}") from exc
    assert conn.protocol is not None
    # As the session sets them, with its defaults otherwise (no read timeout: the attempt's deadlines
    # are the limits).
    conn.protocol.set_response_params(
        skip_payload=request.method == "HEAD", read_until_eof=True, auto_decompress=False
    )
    try:
        response = await req.send(conn)
        try:
            await response.start(conn)
        except BaseException:
            response.close()
            raise
    except BaseException as exc:
        conn.close()
        if isinstance(exc, OSError) and not isinstance(exc, (aiohttp.ClientError, TimeoutError)):
            raise aiohttp.ClientOSError(*exc.args) from exc
        raise
    return response


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
    """timeout | connect: a timeout only when the error was caused by one (aiohttp's connector raises
    its errors from the socket's)."""
    return "timeout" if isinstance(exc.__cause__, TimeoutError) else "connect"


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
        with Deadline(total_seconds):
            return await read_capped(response, MAX_RESPONSE_BYTES)
    except TimeoutError:
        raise AttemptFailed("timeout", detail="upstream body did not finish in time") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise AttemptFailed("connect", detail=type(exc).__name__) from None
    finally:
        await response.aclose()
