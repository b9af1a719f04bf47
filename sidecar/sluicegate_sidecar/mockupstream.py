"""A mock connection's upstream: the offline mock's httpx transport, answered in-process.

Imported only when a config has a mock connection: httpx and the mock's generators are memory every
other sidecar would pay. Requests are built as ``httpx.Request``s and go straight to the transport (no
client layer), with the same deadlines and outcomes as a real connection's (``upstream``); httpx's
errors never leave this module (a broken body arrives as ``ConnectionError``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from sluicegate_contract.schema import MockSettings

from .mock.transport import MockUpstreamTransport
from .providers.base import UpstreamRequest
from .upstream import (
    MAX_PARSED_URLS,
    AttemptFailed,
    OpenResponse,
    fetch_over,
    open_over,
    read_capped,
)


class _Response:
    """An ``httpx.Response`` as an ``OpenResponse``, its transport errors raised as ``ConnectionError``
    (what the serving path catches as a broken connection, never as a timeout)."""

    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status_code

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise ConnectionError(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """An ``Upstream`` over an httpx transport (the mock's)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, connect_seconds: float = 5.0) -> None:
        self.transport = transport
        self.extensions = {"timeout": {"connect": connect_seconds, "pool": connect_seconds, "read": None}}
        self._urls: dict[str, tuple[httpx.URL, str]] = {}

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
        last), asking for identity encoding, as a real connection's is sent."""
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

    # -- the attempt's phases (``upstream.open_over``, ``fetch_over``) over the transport ---------

    errors: tuple[type[BaseException], ...] = (httpx.TransportError, OSError)
    body_errors: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError)

    async def open(self, request: UpstreamRequest, first_byte_seconds: float) -> OpenResponse:
        return await open_over(self, request, first_byte_seconds)

    async def fetch(
        self, request: UpstreamRequest, first_byte_seconds: float, total_seconds: float
    ) -> bytes | AttemptFailed:
        return await fetch_over(self, request, first_byte_seconds, total_seconds)

    async def send(self, request: UpstreamRequest) -> httpx.Response:
        outgoing = self.request(request)
        response = await self.transport.handle_async_request(outgoing)
        response.request = outgoing
        return response

    def status(self, response: httpx.Response) -> int:
        return response.status_code

    def error_headers(self, response: httpx.Response) -> dict[str, str]:
        return dict(response.headers.items())

    async def read(self, response: httpx.Response, limit: int) -> bytes:
        return await read_capped(response, limit)

    async def close(self, response: httpx.Response) -> None:
        await response.aclose()

    def opened(self, response: httpx.Response) -> OpenResponse:
        return _Response(response)

    def failure_kind(self, exc: BaseException) -> str:
        return _failure_kind(exc)

    async def aclose(self) -> None:
        await self.transport.aclose()


def mock_upstream(settings: MockSettings | None) -> HttpxUpstream:
    """The upstream of a mock connection: its in-process transport."""
    settings = settings or MockSettings()
    return HttpxUpstream(MockUpstreamTransport(settings, settings.seed))


def _failure_kind(exc: BaseException) -> str:
    """timeout | connect: what caused ``exc`` when a socket error did, else whether it is httpx's timeout."""
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return "timeout" if isinstance(cause, TimeoutError) else "connect"
    return "timeout" if isinstance(exc, httpx.TimeoutException) else "connect"
