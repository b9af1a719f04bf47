"""The sidecar's two ASGI apps: the OpenAI-compatible API (loopback) and ops (/metrics, /healthz, /readyz).

Routing is on the raw path, exact matches only (fault 24); bodies are read under a size cap and a
receive deadline (faults 4, 5); every error is an OpenAI envelope.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any, get_args

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sluicegate_contract.ladder import VERDICTS, Verdict, worse
from sluicegate_contract.schema import ProviderKind

from .attribution import attribute
from .budgetsummary import summarize
from .context import RequestContext
from .errors import ApiError, error_body
from .pipeline import Pipeline, error_response
from .providers.base import Operation
from .runtime import Gateway
from .wire import CLOSE, Fields, decode_body, read_fields, too_large

log = logging.getLogger("sluicegate.sidecar")

API_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/messages",
        "/v1/responses",
    }
)
# TOLVYN's per-provider base URL: /v1/proxy/<provider kind>/<endpoint> pins that provider.
PROXY_KINDS = frozenset(get_args(ProviderKind))
PROXY_ALIASES = {"google": "gemini", "azure": "azure-openai"}  # TOLVYN's names for them
PROXY_PATH = re.compile(
    r"^/v1/proxy/([a-z-]{2,32})(/v1)?/(chat/completions|completions|embeddings|models|messages|responses)$"
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
}


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
            if path not in self.allowed:
                body = error_body(ApiError(404, "Unknown endpoint.", code="unknown_url"))
                response = Response(body, status_code=404, media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_limited(request: Request, limit: int, deadline: float) -> bytes:
    """The whole body, under ``limit`` bytes and ``deadline`` seconds. Every refusal says
    ``Connection: close`` (uvicorn then closes it): the rest of the body is never read (fault 5)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "Invalid Content-Length.", code="bad_request", headers=CLOSE)
        if int(length) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, "The request body was not received in time.", code="request_timeout", headers=CLOSE
        ) from None
    return b"".join(chunks)


def _request_id(headers: Mapping[str, str]) -> str:
    given = headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


def build_api(gateway: Gateway) -> ASGIApp:
    pipeline = Pipeline(gateway)
    settings = gateway.settings

    async def read_request(request: Request, headers: Mapping[str, str], op: Operation) -> tuple[Any, Fields]:
        if not headers.get("content-type", "").lower().startswith("application/json"):
            raise ApiError(400, "Send the request body as application/json.", code="bad_content_type")
        raw = await read_limited(request, settings.max_body_bytes, settings.receive_timeout)
        body = decode_body(raw)
        needs = _OPS[op]
        if op == "responses" and "input" not in body and _STATEFUL_INPUT & body.keys():
            needs = "model"  # the upstream holds the input (a stored prompt, an earlier response)
        return body, read_fields(body, needs=needs)

    async def operation(request: Request, op: Operation) -> Response:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        pin_kind: str | None = request.scope.get("state", {}).get("pin_kind")
        ctx = RequestContext(
            request_id=_request_id(headers),
            op=op,
            requested_model="",
            attribution=attribute(gateway.pod, headers),
        )
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
                body, fields = await read_request(request, headers, op)
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
            response = await pipeline.handle(op, body, fields, ctx, headers, pin_kind)
        except ApiError as exc:
            pipeline.accountant.finish(ctx, exc.status)
            return error_response(
                exc, pipeline.headers(ctx) if gateway.served else {"x-request-id": ctx.request_id}
            )
        if not isinstance(response, StreamingResponse):
            pipeline.accountant.finish(ctx, response.status_code)
        return response

    async def chat(request: Request) -> Response:
        return await operation(request, "chat")

    async def completions(request: Request) -> Response:
        return await operation(request, "completions")

    async def embeddings(request: Request) -> Response:
        return await operation(request, "embeddings")

    async def messages(request: Request) -> Response:
        return await operation(request, "messages")

    async def responses(request: Request) -> Response:
        return await operation(request, "responses")

    async def models(request: Request) -> Response:
        served = gateway.served
        if served is None:
            return error_response(
                ApiError(503, "No verified config is loaded yet.", type="api_error", code="not_ready")
            )
        return JSONResponse({"object": "list", "data": served.catalog.listing()})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
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
