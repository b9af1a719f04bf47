"""``POST /v1/messages/count_tokens``: Anthropic's free token count.

Forwarded, with the connection's key, to the first usable candidate whose provider counts tokens
(Anthropic, or the offline mock); for other providers — or when that upstream cannot answer — the
gateway's own prompt estimate (``tokens.estimate_prompt_tokens``, which errs high). The reply
header ``X-Sluicegate-Token-Count`` says which (``upstream`` | ``estimate``; the offline mock's
count is an estimate too). Counting is free
upstream, so it is never reserved, charged or written to the ledger; only the kill switch refuses it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.responses import Response

from .context import RequestContext
from .errors import ApiError, kill_switch
from .providers.base import BadUpstreamResponse
from .providers.registry import adapter_for
from .routing.outcome import final_error
from .routing.planning import plan_request
from .upstream import AttemptFailed, open_response, read_body
from .wire import Fields

if TYPE_CHECKING:
    from .pipeline import Pipeline

COUNTING_KINDS = frozenset({"anthropic", "mock"})


async def count_tokens(
    pipeline: Pipeline,
    request: dict[str, Any],
    fields: Fields,
    ctx: RequestContext,
    headers: Mapping[str, str],
    pin_kind: str | None = None,
) -> Response:
    gw = pipeline.gw
    served = gw.served
    if served is None:
        raise ApiError(503, "No verified config is loaded yet.", type="api_error", code="not_ready")
    pin = None
    if pin_kind is not None:
        pin = (pin_kind, {p.name for p in served.loaded.config.providers if p.declared_kind == pin_kind})
    hint = headers.get("x-sluicegate-tier-hint") or gw.settings.default_tier
    plan = plan_request(served.catalog, "count_tokens", request, fields.model, hint, pin)
    ctx.tier = plan.resolution.tier
    decision = gw.budgets.decide(ctx.attribution, ctx.wall)
    if decision.action == "KILL":
        ctx.action = "KILL"
        raise kill_switch(decision.policy or "")
    now = time.monotonic()
    for target in plan.candidates:
        counts = target.provider in COUNTING_KINDS
        if not counts or not gw.health.usable(target.connection, target.model, now):
            continue
        adapter = adapter_for(target.provider)
        conn = served.loaded.connections[target.connection]
        timeouts = served.catalog.connection(target.connection).timeouts  # type: ignore[union-attr]
        upstream = adapter.build(
            "count_tokens", conn, target.model, request, stream=False, client_headers=ctx.client_headers
        )
        started = time.perf_counter()
        try:
            response = await open_response(
                served.clients[target.connection], upstream, timeouts.first_byte_seconds
            )
            raw = await read_body(response, timeouts.idle_seconds, timeouts.total_seconds)
            reply = adapter.parse("count_tokens", target.model, raw)
        except AttemptFailed as failure:
            ctx.upstream_seconds += time.perf_counter() - started
            status = failure.status if failure.kind == "http" else None
            if status is not None and 400 <= status < 500 and status not in (401, 403, 408, 429):
                # the request's own fault: say why, in words cleaned of the connection's key
                info = adapter.parse_error(status, failure.body, scrubber=conn.scrubber)
                err = final_error("request", status)
                raise ApiError(err.status, info.message, type=err.type, code=err.code) from None
            break  # the upstream cannot count now: the estimate still answers
        except BadUpstreamResponse:
            break
        ctx.upstream_seconds += time.perf_counter() - started
        ctx.routed = target
        return _reply(pipeline, ctx, reply.body, "estimate" if target.provider == "mock" else "upstream")
    if plan.candidates:
        ctx.routed = plan.candidates[0]
    body = msgspec.json.encode({"input_tokens": plan.prompt_tokens})
    return _reply(pipeline, ctx, body, "estimate")


def _reply(pipeline: Pipeline, ctx: RequestContext, body: bytes, source: str) -> Response:
    headers = pipeline.headers(ctx, {"x-sluicegate-token-count": source})
    return Response(body, status_code=200, media_type="application/json", headers=headers)
