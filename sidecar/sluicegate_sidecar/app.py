"""The sidecar's two ASGI apps: the OpenAI-compatible API (loopback) and ops (/metrics, /healthz, /readyz).

How a raw request reaches an operation (exact paths, the body under a cap and a deadline) is in
``apiroutes``; here, each operation's reading of its body, and the pages. Errors are in the route's
envelope (Anthropic's on /v1/messages*, OpenAI's elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sluicegate_contract.ladder import VERDICTS, Verdict, worse

from .apiroutes import API_PATHS, Operate, RequestIds, Routes, StrictPaths, read_limited
from .attribution import attribute
from .budgetsummary import summarize
from .context import RequestContext
from .errors import ApiError
from .modelsapi import anthropic_page, find_model
from .pipeline import Pipeline, error_response
from .providers.base import Operation
from .runtime import Gateway
from .tokencount import count_tokens
from .wire import BODY_IN, Fields, decode_body, read_fields

log = logging.getLogger("sluicegate.sidecar")

_STATEFUL_INPUT = frozenset({"previous_response_id", "conversation", "prompt"})
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


def _speaks_anthropic(headers: Mapping[str, str]) -> bool:
    """An Anthropic SDK (or Claude Code) sends ``anthropic-version``, or its key as ``x-api-key``."""
    return "anthropic-version" in headers or ("x-api-key" in headers and "authorization" not in headers)


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

    async def operation(scope: Scope, receive: Receive, send: Send, op: Operation) -> None:
        """Serve one API operation and send its response. A complete reply (or an error) is counted
        and logged once it has been sent (``finish``): off the path between the upstream's answer
        and the client's; a stream is counted when it ends (``relay``)."""
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
            response = error_response(
                exc,
                pipeline.headers(ctx) if gateway.served else {"x-request-id": ctx.request_id},
                anthropic=anthropic,
            )
        try:
            await response(scope, receive, send)
        finally:
            if not isinstance(response, StreamingResponse):
                pipeline.accountant.finish(ctx, response.status_code)

    def operate(op: Operation) -> Operate:
        async def run(scope: Scope, receive: Receive, send: Send) -> None:
            await operation(scope, receive, send, op)

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
