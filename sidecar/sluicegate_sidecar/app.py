"""The sidecar's two ASGI apps: the OpenAI-compatible API (loopback) and ops (/metrics, /healthz, /readyz).

Routing is on the raw path, exact matches only (fault 24); bodies are read under a size cap and a
receive deadline (faults 4, 5); errors are in the route's envelope (Anthropic's on /v1/messages*,
OpenAI's elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, get_args

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sluicegate_contract.ladder import VERDICTS, Verdict, worse
from sluicegate_contract.schema import ProviderKind

from .attribution import attribute
from .budgetsummary import summarize
from .context import RequestContext
from .errors import ApiError, anthropic_error_body, error_body
from .modelsapi import anthropic_page, find_model
from .pipeline import Pipeline, error_response
from .providers.base import Operation
from .routing.catalog import model_id_problem
from .runtime import Gateway
from .tokencount import count_tokens
from .wire import BODY_IN, CLOSE, Fields, decode_body, read_fields, too_large

log = logging.getLogger("sluicegate.sidecar")

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
_STATEFUL_INPUT = frozenset({"previous_response_id", "conversation", "prompt"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_REJECTED_AS = {"request_too_large": "too_large"}  # metric reasons that differ from the error code
_OPS = {
    "chat": "messages",
    "completions": "prompt",
    "embeddings": "input",
    "messages": "messages",
    "responses": "input",
    "count_tokens": "messages",
}
_ANTHROPIC_OPS = frozenset({"messages", "count_tokens"})


Handler = Callable[[Request], Awaitable[Response]]
Operate = Callable[[Scope, Receive], Awaitable[Response]]


class Routes:
    """Exact path → handler, as a plain ASGI app: Starlette's router and its middleware layers
    (pattern matching per route, exception handlers) are work ``StrictPaths`` has already made
    unnecessary. The API's operations (POST) take the ASGI scope and ``receive`` as they are, with no
    ``Request`` wrapped around them (the hot path); the pages (GET, HEAD) a ``Request``. A wrong
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
                response = await operate(scope, receive)
            else:
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


def _speaks_anthropic(headers: Mapping[str, str]) -> bool:
    """An Anthropic SDK (or Claude Code) sends ``anthropic-version``, or its key as ``x-api-key``."""
    return "anthropic-version" in headers or ("x-api-key" in headers and "authorization" not in headers)


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


def build_api(gateway: Gateway) -> ASGIApp:
    pipeline = Pipeline(gateway)
    settings = gateway.settings
    request_id = RequestIds()

    async def read_request(
        scope: Scope, receive: Receive, headers: Mapping[str, str], op: Operation
    ) -> tuple[Any, Fields]:
        if not headers.get("content-type", "").lower().startswith("application/json"):
            raise ApiError(400, "Send the request body as application/json.", code="bad_content_type")
        raw = await read_limited(
            receive, headers, settings.max_body_bytes, settings.receive_timeout, BODY_IN in scope
        )
        body = decode_body(raw)
        needs = _OPS[op]
        if op == "responses" and "input" not in body and _STATEFUL_INPUT & body.keys():
            needs = "model"  # the upstream holds the input (a stored prompt, an earlier response)
        return body, read_fields(body, needs=needs)

    async def operation(scope: Scope, receive: Receive, op: Operation) -> Response:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        pin_kind: str | None = scope.get("state", {}).get("pin_kind")
        ctx = RequestContext(
            request_id=request_id(headers),
            op=op,
            requested_model="",
            attribution=attribute(gateway.pod, headers),
            client_headers={k: v for k, v in headers.items() if k.startswith("anthropic-")},
        )
        anthropic = op in _ANTHROPIC_OPS
        try:
            if gateway.drain.draining:
                raise ApiError(
                    503,
                    "The sidecar is shutting down.",
                    type="api_error",
                    code="draining",
                    headers={"retry-after": "2"},
                )
            try:
                body, fields = await read_request(scope, receive, headers, op)
            except ApiError as exc:  # refused before routing: counted once, here (faults 1, 4, 5)
                reason = _REJECTED_AS.get(exc.code or "", exc.code or "bad_request")
                gateway.metrics.rejected.labels(reason).inc()
                raise
            ctx.requested_model = fields.model[:256]
            for name in ("x-portkey-provider", "x-portkey-config", "x-portkey-virtual-key"):
                if name in headers:
                    log.info(
                        "request %s: %s is ignored (routing comes from the config)", ctx.request_id, name
                    )
            if op == "count_tokens":
                response = await count_tokens(pipeline, body, fields, ctx, headers, pin_kind)
            else:
                response = await pipeline.handle(op, body, fields, ctx, headers, pin_kind)
        except ApiError as exc:
            pipeline.accountant.finish(ctx, exc.status)
            return error_response(
                exc,
                pipeline.headers(ctx) if gateway.served else {"x-request-id": ctx.request_id},
                anthropic=anthropic,
            )
        if not isinstance(response, StreamingResponse):
            pipeline.accountant.finish(ctx, response.status_code)
        return response

    def operate(op: Operation) -> Operate:
        async def run(scope: Scope, receive: Receive) -> Response:
            return await operation(scope, receive, op)

        return run

    async def models(request: Request) -> Response:
        served = gateway.served
        anthropic = _speaks_anthropic(request.headers)
        if served is None:
            error = ApiError(503, "No verified config is loaded yet.", type="api_error", code="not_ready")
            return error_response(error, anthropic=anthropic)
        if anthropic:
            try:
                return JSONResponse(anthropic_page(served.catalog.anthropic_listing(), request.query_params))
            except ApiError as exc:
                return error_response(exc, anthropic=True)
        return JSONResponse({"object": "list", "data": served.catalog.listing()})

    async def model(request: Request) -> Response:
        served = gateway.served
        anthropic = _speaks_anthropic(request.headers)
        if served is None:
            error = ApiError(503, "No verified config is loaded yet.", type="api_error", code="not_ready")
            return error_response(error, anthropic=anthropic)
        model_id: str | None = request.scope.get("state", {}).get("model_id")
        entry = find_model(served.catalog, model_id, anthropic=anthropic) if model_id else None
        if entry is None:
            shown = f" '{model_id}'" if model_id else ""
            message = f"The model{shown} does not exist or you do not have access to it."
            error = ApiError(404, message, code="model_not_found")
            return error_response(error, anthropic=anthropic)
        return JSONResponse(entry)

    app = Routes(
        {
            "/v1/chat/completions": operate("chat"),
            "/v1/completions": operate("completions"),
            "/v1/embeddings": operate("embeddings"),
            "/v1/messages": operate("messages"),
            "/v1/responses": operate("responses"),
            "/v1/messages/count_tokens": operate("count_tokens"),
        },
        {
            "/v1/models": models,
            "/v1/models/id": model,  # GET /v1/models/{id}, as StrictPaths rewrites it
        },
    )
    assert app.paths >= API_PATHS  # StrictPaths lets only these (and /v1/models/id) through
    return StrictPaths(app, API_PATHS)


def build_ops(gateway: Gateway) -> ASGIApp:
    async def metrics(request: Request) -> Response:
        _refresh_budget_gauges(gateway)
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        served = gateway.served
        watch_problem = gateway.watch_problem()
        detail: dict[str, Any] = {
            "configSerial": served.serial if served else None,
            "lastRejection": gateway.last_rejection,
            "ledger": gateway.ledger.problem or gateway.restore_problem or "ok",
            "unusableConnections": dict(served.loaded.unusable) if served else {},
            "draining": gateway.drain.draining,
            "rollbackGuard": gateway.serial_state_problem or "ok",
            "configWatch": watch_problem or "ok",
        }
        ready = served is not None and not gateway.drain.draining and watch_problem is None
        return Response(
            msgspec.json.encode({"ready": ready, **detail}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


def _refresh_budget_gauges(gateway: Gateway) -> None:
    from datetime import UTC, datetime

    m = gateway.metrics
    gauges = (m.budget_limit, m.budget_spent, m.budget_remaining, m.budget_verdict)
    for gauge in (*gauges, m.budget_policy_spent, m.budget_scopes):
        gauge.clear()  # scopes of closed windows must not linger (the operator sums these)
    verdicts: dict[tuple[str, str], Verdict] = {}
    for summary in summarize(gateway.budgets.open_scopes(datetime.now(UTC))):
        labels = (summary.policy, summary.scope, summary.window)
        m.budget_limit.labels(*labels).set(summary.limit_micro_usd / 1_000_000)
        m.budget_spent.labels(*labels).set(summary.top_spent_micro_usd / 1_000_000)
        m.budget_remaining.labels(*labels).set(summary.top_remaining_micro_usd / 1_000_000)
        m.budget_policy_spent.labels(summary.policy, summary.window).set(summary.spent_micro_usd / 1_000_000)
        for verdict, count in summary.verdicts.items():
            m.budget_scopes.labels(summary.policy, summary.window, verdict).set(count)
        key = (summary.policy, summary.scope)
        verdicts[key] = worse(verdicts.get(key, "allow"), summary.top_verdict)
    for (policy, scope), current in verdicts.items():  # the worst of the policy's windows
        for verdict in VERDICTS:
            m.budget_verdict.labels(policy, scope, verdict).set(1 if current == verdict else 0)
    served = gateway.served
    if served is not None:
        import time

        now = time.monotonic()
        states = {"closed": 0, "half_open": 1, "open": 2}
        for provider in served.loaded.config.providers:
            for model in provider.models:
                state = gateway.health.state(provider.name, model.name, now)
                m.circuit.labels(provider.name, model.name).set(states.get(state, 0))
