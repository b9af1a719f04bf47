"""The request pipeline: resolve → budget verdict → for each candidate: reserve, send, settle.

Falls back only before the first byte reaches the client; every attempt reserves on its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from sluicegate_contract.money import MICRO_USD

from .accounting import Accountant, attempt_bounds, charge_for
from .admission import Admission
from .attempt import Attempt, failure_class, response_headers
from .budget import Refusal, Reservation
from .context import RequestContext
from .errors import (
    ApiError,
    anthropic_error_body,
    authority_unavailable,
    budget_exceeded,
    error_body,
    kill_switch,
)
from .providers.base import Adapter, BadUpstreamResponse, Operation, UnsupportedOperation
from .providers.registry import adapter_for
from .relay import stream_response
from .routing.bounds import least_output_cap, needs_output_cap
from .routing.catalog import Target
from .routing.outcome import final_error, should_fall_back
from .routing.planning import Plan, plan_request, reroute
from .routing.retryafter import parse_retry_after
from .routing.selection import expected_cost_micro_usd, order_candidates
from .runtime import Gateway, Served
from .upstream import AttemptFailed, fetch_reply, open_response
from .wire import Fields, output_cap, with_output_cap


def error_response(
    error: ApiError, headers: Mapping[str, str] | None = None, *, anthropic: bool = False
) -> Response:
    """``error`` in the client's envelope: Anthropic's on Anthropic's routes, else OpenAI's."""
    body = (
        anthropic_error_body(error, (headers or {}).get("x-request-id")) if anthropic else error_body(error)
    )
    return Response(
        body,
        status_code=error.status,
        media_type="application/json",
        headers={**(headers or {}), **error.headers},
    )


class Pipeline:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.accountant = Accountant(gateway)
        self.admission = Admission(gateway)

    def _order(self, plan: Plan, fields: Fields, now: float) -> list[Target]:
        cap = output_cap(fields)
        health = self.gw.health
        return order_candidates(
            plan.resolution.strategy,
            plan.candidates,
            lambda t: expected_cost_micro_usd(t, plan.prompt_tokens, cap, plan.bound.outputs),
            self.gw.rng,
            lambda t: health.usable(t.connection, t.model, now),
        )

    # -- budget -----------------------------------------------------------------------------

    async def _reserve(
        self, ctx: RequestContext, op: Operation, target: Target, plan: Plan, fields: Fields
    ) -> tuple[Reservation | None, int | None, Refusal | None]:
        """Reserve this attempt's worst case; returns (reservation, output cap to send, refusal)."""
        least = least_output_cap(op, target.provider)
        return await self.admission.reserve(ctx, target, plan.bound, fields, least)

    # -- the request ------------------------------------------------------------------------

    async def handle(
        self,
        op: Operation,
        request: dict[str, Any],
        fields: Fields,
        ctx: RequestContext,
        headers: Mapping[str, str],
        pin_kind: str | None = None,
    ) -> Response:
        served = self.gw.served
        if served is None:
            raise ApiError(503, "No verified config is loaded yet.", type="api_error", code="not_ready")
        pin = None
        if pin_kind is not None:
            pin = (pin_kind, {p.name for p in served.loaded.config.providers if p.declared_kind == pin_kind})
        hint = headers.get("x-sluicegate-tier-hint") or self.gw.settings.default_tier
        plan = plan_request(served.catalog, op, request, fields.model, hint, pin, (fields.n, fields.best_of))
        ctx.tier = plan.resolution.tier
        ctx.auto_reason = plan.resolution.reason
        ctx.resolved = plan.resolution.kind
        if not (
            self.gw.ledger.healthy and self.gw.spend_restored
        ):  # never spend untracked (docs/architecture.md)
            self.gw.metrics.rejected.labels("ledger_unavailable").inc()
            raise ApiError(
                503,
                "The sidecar cannot record spend right now (its ledger disk is full or read-only); "
                "paid requests are refused until it recovers.",
                type="api_error",
                code="ledger_unavailable",
                headers={"retry-after": "5"},
            )
        decision = await self.admission.decide(ctx)
        ctx.action = decision.action
        ctx.shadow_action = decision.shadow_action if decision.shadow else None
        if decision.action == "KILL":
            raise kill_switch(decision.policy or "")
        if decision.action == "BLOCK":
            raise budget_exceeded(decision.policy or "", "its cap is reached")
        if decision.action in ("DOWNGRADE", "LIGHT_ONLY"):
            ctx.verdict_policy = decision.policy
            plan = reroute(
                served.catalog, plan, decision.action, decision.downgrade_to, decision.policy or ""
            )
            ctx.tier = plan.resolution.tier
        return await self._attempts(served, op, request, fields, ctx, plan)

    async def _attempts(
        self,
        served: Served,
        op: Operation,
        request: dict[str, Any],
        fields: Fields,
        ctx: RequestContext,
        plan: Plan,
    ) -> Response:
        ordered = self._order(plan, fields, time.monotonic())
        if not ordered:
            raise ApiError(
                503,
                "No candidate for this model is available right now (circuits open or keys unusable).",
                type="api_error",
                code="no_healthy_upstream",
                headers={"retry-after": "5"},
            )
        last: AttemptFailed | None = None
        last_target: Target | None = None
        last_class = None
        refusal: Refusal | None = None
        attempt_no = 0
        for target in ordered:
            reservation, send_cap, refusal = await self._reserve(ctx, op, target, plan, fields)
            if refusal is not None:
                if refusal.action == "KILL":
                    ctx.action, ctx.shadow_action = "KILL", None
                    raise kill_switch(refusal.policy)
                if refusal.reason == "budget_authority_unavailable":
                    raise authority_unavailable(refusal.policy)
                if refusal.reason == "pricing_unknown":
                    raise ApiError(
                        402,
                        f"Model {target.provider}/{target.model} has no price; policy '{refusal.policy}' "
                        "refuses unpriced models.",
                        type="budget_exceeded",
                        code="pricing_unknown",
                    )
                continue  # a cheaper candidate may still fit (not an attempt: no retry is used)
            attempt_no += 1
            if last_target is not None and last_class is not None:
                self._count_fallback(served, last_target, target, last_class)
            result = await self._attempt(
                served, op, request, fields, ctx, plan, target, reservation, send_cap
            )
            if isinstance(result, Response):
                return result
            last, last_target = result, target
            last_class = failure_class(result, target)
            if not should_fall_back(last_class, plan.resolution.fallback, attempt_no):
                break
        if last is None:
            assert refusal is not None
            if refusal.action in ("DOWNGRADE", "LIGHT_ONLY") and ctx.verdict_policy is None:
                # The policy's action when this request no longer fits: once, on the lighter tier.
                ctx.action, ctx.shadow_action, ctx.verdict_policy = refusal.action, None, refusal.policy
                plan = reroute(served.catalog, plan, refusal.action, refusal.downgrade_to, refusal.policy)
                ctx.tier = plan.resolution.tier
                return await self._attempts(served, op, request, fields, ctx, plan)
            ctx.action = "BLOCK" if refusal.action in ("DOWNGRADE", "LIGHT_ONLY") else refusal.action
            ctx.shadow_action = None
            raise budget_exceeded(refusal.policy, refusal.scope)
        assert last_class is not None and last_target is not None
        return self._final_failure(ctx, last, last_class, last_target, served)

    def _count_fallback(self, served: Served, failed: Target, to: Target, reason: str) -> None:
        guard = served.guard
        self.gw.metrics.fallbacks.labels(
            guard.model(f"{failed.connection}/{failed.model}"),
            guard.model(f"{to.connection}/{to.model}"),
            reason,
        ).inc()

    def _final_failure(
        self, ctx: RequestContext, failure: AttemptFailed, klass: str, target: Target, served: Served
    ) -> Response:
        err = final_error(klass, failure.status)  # type: ignore[arg-type]
        adapter = adapter_for(target.provider)
        if klass == "request":
            # The attempt's connection (same ``served``): its key never reaches the client (fault 31).
            scrubber = served.loaded.connections[target.connection].scrubber
            info = adapter.parse_error(failure.status or 400, failure.body, scrubber=scrubber)
            message = info.message
        elif klass == "429":
            message = "All candidates are rate limited upstream; retry later."
        elif klass == "timeout":
            message = "The upstream did not answer in time."
        elif klass == "bad_response":
            message = "The upstream sent a response that is not valid."
        else:
            message = "The upstream failed and no fallback succeeded."
        headers = {}
        if klass == "429":
            retry = parse_retry_after(failure.headers, datetime.now(UTC))
            headers["retry-after"] = str(max(1, round(retry))) if retry is not None else "1"
        error = ApiError(err.status, message, type=err.type, code=err.code, headers=headers)
        raise error

    async def _attempt(
        self,
        served: Served,
        op: Operation,
        request: dict[str, Any],
        fields: Fields,
        ctx: RequestContext,
        plan: Plan,
        target: Target,
        reservation: Reservation | None,
        send_cap: int | None,
    ) -> Response | AttemptFailed:
        if send_cap is None and needs_output_cap(op, target.provider, request) and not output_cap(fields):
            send_cap = target.spec.max_output_tokens
        attempt = Attempt(self.gw, self.accountant, ctx, plan, target, reservation, send_cap)
        try:
            return await self._exchange(served, attempt, op, request, fields)
        except Exception as exc:
            if not attempt.closed:  # not the upstream's failure but a fault of ours: account for it
                # Sent, the provider may have billed it: kept as spend, in the ledger; else released.
                failure = AttemptFailed("bad_response", detail=f"internal error ({type(exc).__name__})")
                attempt.fail(failure, billed=attempt.started > 0.0)
            raise

    async def _exchange(
        self, served: Served, attempt: Attempt, op: Operation, request: dict[str, Any], fields: Fields
    ) -> Response | AttemptFailed:
        """The attempt's upstream exchange: the request built (with the output cap sent, if any) and
        sent, its reply completed or streamed."""
        ctx, target, plan, send_cap = attempt.ctx, attempt.target, attempt.plan, attempt.send_cap
        adapter = adapter_for(target.provider)
        conn = served.loaded.connections[target.connection]
        provider = served.catalog.connection(target.connection)
        assert provider is not None
        timeouts = provider.timeouts
        cap_field = "max_output_tokens" if op == "responses" else "max_tokens"
        body = request if send_cap is None else with_output_cap(request, send_cap, cap_field)
        try:
            upstream = adapter.build(
                op, conn, target.model, body, stream=fields.stream, client_headers=ctx.client_headers
            )
        except UnsupportedOperation as exc:
            attempt.release()
            raise ApiError(400, str(exc), code="unsupported_for_model") from None
        client = served.clients[target.connection]
        now = time.monotonic()
        self.gw.health.acquire(target.connection, target.model, now)
        attempt.started = time.perf_counter()
        raw: bytes | AttemptFailed = b""
        response = None
        try:
            if fields.stream:
                response = await open_response(client, upstream, timeouts.first_byte_seconds)
            else:  # the status line and the body under one deadline object
                raw = await fetch_reply(client, upstream, timeouts.first_byte_seconds, timeouts.total_seconds)
        except AttemptFailed as failure:
            attempt.upstream_done()
            attempt.fail(failure)
            return failure
        ctx.routed = target
        spec, bound = target.spec, plan.bound
        attempt.bounds = attempt_bounds(  # what a correct upstream can report for this attempt (fault 30)
            spec.price, bound.input_tokens(target), attempt.reserved_micro_usd,
            send_cap if send_cap is not None else output_cap(fields),  # unchanged: the client's own cap
            spec.max_output_tokens, bound.outputs, spec.context_window if bound.one_prompt else None,
        )  # fmt: skip
        if response is not None:
            return await stream_response(
                attempt, adapter, op, request, response, timeouts, scrubber=conn.scrubber
            )
        return await self._complete(attempt, adapter, op, raw)

    async def _complete(
        self, attempt: Attempt, adapter: Adapter, op: Operation, raw: bytes | AttemptFailed
    ) -> Response | AttemptFailed:
        target, plan = attempt.target, attempt.plan
        try:
            if isinstance(raw, AttemptFailed):
                raise raw
            reply = adapter.parse(op, target.model, raw)
        except (AttemptFailed, BadUpstreamResponse) as exc:
            failure = (
                exc if isinstance(exc, AttemptFailed) else AttemptFailed("bad_response", detail=str(exc))
            )
            attempt.upstream_done()
            attempt.fail(failure, billed=True)
            return failure
        attempt.upstream_done()
        self.gw.health.record_success(target.connection, target.model)
        # A reply whose usage is anomalous still reaches the client (it is well-formed otherwise);
        # it is charged a bounded figure, at most the reservation (fault 30).
        reserved = attempt.reserved_micro_usd
        price, bounds = target.spec.price, attempt.bounds
        charge = charge_for(price, reply.usage, reserved, plan.prompt_tokens, None, bounds)
        attempt.settle(charge, 200)
        await attempt.durable()
        headers = attempt.headers({"x-sluicegate-cost-usd": f"{charge.cost_micro_usd / MICRO_USD:.6f}"})
        return Response(reply.body, status_code=200, media_type="application/json", headers=headers)

    def remaining(self, ctx: RequestContext) -> int | None:
        return self.gw.budgets.remaining(ctx.attribution, datetime.now(UTC))

    def headers(self, ctx: RequestContext, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return response_headers(ctx, self.remaining(ctx), extra)
