"""One attempt: one candidate tried for one request, with what it reserved and the cap it sent.

An attempt ends exactly one way: ``settle`` (a reply, charged), ``fail`` (health, the fallback trail,
and the reservation kept as spend when the provider may have billed it, else released) or
``release``. The pipeline creates it; the relay ends a stream's attempt through it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sluicegate_contract.money import MICRO_USD

from .accounting import Accountant, Bounds, Charge, charge_for
from .budget import Reservation
from .context import RequestContext
from .providers.registry import adapter_for
from .routing.catalog import Target
from .routing.outcome import FailureClass, classify
from .routing.planning import Plan
from .routing.retryafter import backoff, parse_retry_after
from .runtime import Gateway
from .upstream import AttemptFailed

RATE_LIMIT_COOLDOWN_SECONDS = 2.0  # a 429 without a usable Retry-After cools its candidate 1-2 s


def response_headers(
    ctx: RequestContext, remaining: int | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``X-Sluicegate-*`` headers of a reply (or an error) to ``ctx``."""
    out = {"x-request-id": ctx.request_id, "x-sluicegate-verdict": ctx.verdict}
    if ctx.routed is not None:
        out["x-sluicegate-routed-model"] = f"{ctx.routed.provider}/{ctx.routed.model}"
    if ctx.tier:
        out["x-sluicegate-tier"] = ctx.tier
    if ctx.fallbacks:
        out["x-sluicegate-fallbacks"] = f"{len(ctx.fallbacks)}; " + ", ".join(ctx.fallbacks)
    else:
        out["x-sluicegate-fallbacks"] = "0"
    if remaining is not None:
        out["x-sluicegate-budget-remaining-usd"] = f"{remaining / MICRO_USD:.6f}"
    if extra:
        out.update(extra)
    return out


def failure_class(failure: AttemptFailed, target: Target) -> FailureClass:
    """The class of a failed attempt; a 4xx the adapter reads as a credentials failure is "auth"
    (Gemini answers a bad key with 400 API_KEY_INVALID, not 401: fault 12)."""
    klass = classify(failure.status, None if failure.kind == "http" else failure.kind)  # type: ignore[arg-type]
    assert klass is not None
    if klass == "request":
        info = adapter_for(target.provider).parse_error(failure.status or 400, failure.body)
        if info.code == "upstream_auth_failed":
            return "auth"
    return klass


@dataclass(slots=True)
class Attempt:
    gw: Gateway
    accountant: Accountant
    ctx: RequestContext
    plan: Plan
    target: Target
    reservation: Reservation | None
    send_cap: int | None  # the output cap written into the upstream request (None: the client's own)
    started: float = 0.0  # perf_counter when the request went upstream
    bounds: Bounds | None = None  # what a correct upstream can report for it, once it answered
    closed: bool = False  # settled or released: what it reserved is accounted for

    @property
    def reserved_micro_usd(self) -> int:
        return self.reservation.amount_micro_usd if self.reservation is not None else 0

    def upstream_done(self) -> None:
        """The upstream's part is over: count its time."""
        self.ctx.upstream_seconds += time.perf_counter() - self.started

    def settle(self, charge: Charge, status: int | str) -> None:
        self.closed = True
        self.accountant.settle(self.ctx, self.target, self.reservation, charge, status)

    async def durable(self) -> None:
        """Wait until the request's ledger line is written (before the reply's last byte leaves)."""
        await self.accountant.durable(self.ctx)

    def release(self) -> None:
        """Nothing was spent: give the reservation back and wake requests waiting for room."""
        self.closed = True
        if self.reservation is not None:
            self.gw.budgets.release(self.reservation)
            self.gw.signal_settled()

    def fail(self, failure: AttemptFailed, *, billed: bool = False) -> None:
        """Record a failed attempt: health, the fallback trail, and what it may have cost."""
        ctx, target = self.ctx, self.target
        klass = failure_class(failure, target)
        now = time.monotonic()
        retry_after = parse_retry_after(failure.headers, datetime.now(UTC)) if failure.headers else None
        if klass == "429" and retry_after is None:  # no usable Retry-After: a jittered cool-down (fault 9)
            retry_after = backoff(0, self.gw.rng, base=RATE_LIMIT_COOLDOWN_SECONDS)
        self.gw.health.record_failure(target.connection, target.model, klass, now, retry_after)
        ctx.fallbacks.append(
            f"{target.connection}/{target.model}={klass if klass != 'request' else failure.status}"
        )
        if billed or klass == "timeout":
            # The provider may have processed (and billed) it: keep the reservation as spend.
            charge = charge_for(
                target.spec.price, None, self.reserved_micro_usd, self.plan.prompt_tokens, None
            )
            self.settle(charge, f"upstream_{klass}")
        else:
            self.release()

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        remaining = self.gw.budgets.remaining(self.ctx.attribution, datetime.now(UTC))
        return response_headers(self.ctx, remaining, extra)
