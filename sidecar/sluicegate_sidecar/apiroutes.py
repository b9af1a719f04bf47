"""How a raw request reaches the sidecar's API: exact paths only (fault 24) with TOLVYN's per-provider
proxy paths and ``/v1/models/{id}`` mapped onto them, a 405 in the path's envelope, the body read under
a size cap and a receive deadline (faults 4, 5), and the request id. Plain ASGI: the operations (the
hot path) take the scope and ``receive`` as they are.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import get_args

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sluicegate_contract.schema import ProviderKind

from .errors import ApiError, anthropic_error_body, error_body
from .pipeline import error_response
from .routing.catalog import model_id_problem
from .wire import CLOSE, too_large

API_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/messages",
        "/v1/responses",
        "/v1/messages/count_tokens",
    }
)
MODEL_PREFIX = "/v1/models/"  # GET /v1/models/{id}; the id may hold "/" (sent as is or as %2F)
_ID_ESCAPES = {"%2f": "/", "%3a": ":", "%40": "@"}  # what the SDKs' path encoding escapes of an id
# TOLVYN's per-provider base URL: /v1/proxy/<provider kind>/<endpoint> pins that provider.
PROXY_KINDS = frozenset(get_args(ProviderKind))
PROXY_ALIASES = {"google": "gemini", "azure": "azure-openai"}  # TOLVYN's names for them
PROXY_PATH = re.compile(
    r"^/v1/proxy/([a-z-]{2,32})(/v1)?/"
    r"(chat/completions|completions|embeddings|models|messages|messages/count_tokens|responses)$"
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

Handler = Callable[[Request], Awaitable[Response]]
Operate = Callable[[Scope, Receive, Send], Awaitable[None]]  # sends its own response


class Routes:
    """Exact path → handler, as a plain ASGI app: Starlette's router and its middleware layers
    (pattern matching per route, exception handlers) are work ``StrictPaths`` has already made
    unnecessary. The API's operations (POST) take the ASGI scope, ``receive`` and ``send`` as they are,
    with no ``Request`` wrapped around them, and send their own response (the hot path); the pages
    (GET, HEAD) take a ``Request``. A wrong
    method is a 405 with ``Allow``, in the path's envelope."""

    def __init__(self, operations: Mapping[str, Operate], pages: Mapping[str, Handler]) -> None:
        self.operations = dict(operations)
        self.pages = dict(pages)

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self.operations) | frozenset(self.pages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; no websockets
        path, method = scope["path"], scope["method"]
        operate = self.operations.get(path)
        if operate is not None:
            if method == "POST":
                await operate(scope, receive, send)
                return
            response = _wrong_method(path, "POST")
        elif method in ("GET", "HEAD"):
            response = await self.pages[path](Request(scope, receive))
        else:
            response = _wrong_method(path, "GET")
        await response(scope, receive, send)


def _wrong_method(path: str, method: str) -> Response:
    allow = "GET, HEAD" if method == "GET" else method
    error = ApiError(405, f"Use {method} for this endpoint.", code="method_not_allowed")
    return error_response(error, {"allow": allow}, anthropic=path.startswith("/v1/messages"))


class StrictPaths:
    """Refuse any raw path that is not exactly one of the API's (no normalising, no decoding)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            path = raw.split(b"?", 1)[0].decode("latin-1")
            proxied = PROXY_PATH.match(path)
            kind = PROXY_ALIASES.get(proxied.group(1), proxied.group(1)) if proxied else None
            if proxied and kind in PROXY_KINDS:
                path = f"/v1/{proxied.group(3)}"
                state = {**scope.get("state", {}), "pin_kind": kind}
                scope = {**scope, "path": path, "raw_path": path.encode(), "state": state}
            if path.startswith(MODEL_PREFIX) and scope["method"] in ("GET", "HEAD"):
                model_id = _model_id(path[len(MODEL_PREFIX) :])
                state = {**scope.get("state", {}), "model_id": model_id}
                scope = {**scope, "path": "/v1/models/id", "raw_path": b"/v1/models/id", "state": state}
            elif path not in self.allowed:
                error = ApiError(404, "Unknown endpoint.", code="unknown_url")
                anthropic = path.startswith("/v1/messages")
                body = anthropic_error_body(error) if anthropic else error_body(error)
                response = Response(body, status_code=404, media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _model_id(raw: str) -> str | None:
    """The model id of a raw ``/v1/models/{id}`` tail, or None when it is not one a client may send.

    Only the escapes the SDKs' path encoding produces are decoded (``%2F``, ``%3A``, ``%40``); any
    other ``%`` is refused, and the decoded id must pass ``model_id_problem`` (fault 24).
    """
    parts = re.split(r"(%[0-9A-Fa-f]{2})", raw)
    decoded = "".join(_ID_ESCAPES.get(p.lower(), "%") if p.startswith("%") else p for p in parts)
    return decoded if model_id_problem(decoded) is None else None


async def read_limited(
    receive: Receive, headers: Mapping[str, str], limit: int, deadline: float, buffered: bool = False
) -> bytes:
    """The whole body, under ``limit`` bytes and ``deadline`` seconds. Every refusal says
    ``Connection: close`` (uvicorn then closes it): the rest of the body is never read (fault 5).
    A client gone before its body was in raises ``ClientDisconnect`` (as Starlette's request would).
    ``buffered``: the server holds the whole body already (``BODY_IN``), so the first ``receive()``
    returns at once and needs no deadline (no timer set and cancelled: the hot path)."""
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "Invalid Content-Length.", code="bad_request", headers=CLOSE)
        if int(length) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    if buffered:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if len(chunk) > limit:
            raise too_large(limit)
        if not message.get("more_body", False):
            return chunk  # type: ignore[no-any-return]
        chunks.append(chunk)
        size = len(chunk)
    try:
        async with asyncio.timeout(deadline):
            while True:
                message = await receive()
                if message["type"] == "http.request":
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
                elif message["type"] == "http.disconnect":
                    raise ClientDisconnect()
    except TimeoutError:
        raise ApiError(
            408, "The request body was not received in time.", code="request_timeout", headers=CLOSE
        ) from None
    return b"".join(chunks)


class RequestIds:
    """The client's ``x-request-id`` when it is a sane one, else 32 random hex digits (like a UUID's),
    cut from 4 KiB of ``os.urandom`` at a time (one system call per 256 ids, not one per request)."""

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self, headers: Mapping[str, str]) -> str:
        given = headers.get("x-request-id")
        if given and _REQUEST_ID.match(given):
            return given
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._at = at + 16
        return self._pool[at : at + 16].hex()
