"""Settling what an attempt cost: budget counters, the ledger line, metrics and the request log.

The charge rules (FAULTS 27) are pure functions; ``Accountant`` applies them to the runtime state.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from sluicegate_contract.schema import ModelPrice

from .attribution import Attribution
from .budget import Reservation
from .catalog import Target
from .ledger import Entry, LedgerError, entry_attribution, entry_usage, format_time
from .pricing import cost_micro_usd
from .providers.base import Usage
from .runtime import Gateway
from .tokens import estimate_output_tokens_from_chars

log = logging.getLogger("sluicegate.sidecar")


@dataclass(frozen=True, slots=True)
class Charge:
    cost_micro_usd: int
    basis: str  # exact | estimated | unpriced
    usage: Usage | None


def charge_for(
    price: ModelPrice | None,
    usage: Usage | None,
    reserved_micro_usd: int,
    prompt_tokens: int,
    output_chars: int | None,
) -> Charge:
    """What to debit. Reported usage is exact; without it, the smaller of the reservation and the
    streamed-token estimate, but never below what was seen (``output_chars`` None: nothing known)."""
    if price is None:
        return Charge(0, "unpriced", usage)
    if usage is not None:
        return Charge(cost_micro_usd(price, usage), "exact", usage)
    if output_chars is None:
        return Charge(reserved_micro_usd, "estimated", None)
    seen = Usage(input_tokens=0, output_tokens=estimate_output_tokens_from_chars(output_chars))
    estimate = Usage(input_tokens=prompt_tokens, output_tokens=seen.output_tokens)
    cost = max(min(reserved_micro_usd, cost_micro_usd(price, estimate)), cost_micro_usd(price, seen))
    return Charge(cost, "estimated", estimate)


@dataclass
class RequestContext:
    """Mutable facts about one client request, gathered as it goes through the pipeline."""

    request_id: str
    op: str
    requested_model: str
    attribution: Attribution
    started: float = field(default_factory=time.perf_counter)
    wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    tier: str | None = None
    verdict: str = "allow"
    routed: Target | None = None
    fallbacks: list[str] = field(default_factory=list)
    upstream_seconds: float = 0.0
    cost_micro_usd: int = 0
    basis: str | None = None
    usage: Usage | None = None
    status: int | str = 200
    auto_reason: str | None = None
    verdict_policy: str | None = None
    ledger_writes: list[asyncio.Task[None]] = field(default_factory=list)
    admission_deadline: float | None = None  # monotonic; set when it first waits for budget room


class Accountant:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def settle(
        self,
        ctx: RequestContext,
        target: Target,
        reservation: Reservation | None,
        charge: Charge,
        status: int | str,
    ) -> None:
        """Debit ``charge`` now (in memory), then write the ledger line without holding the client."""
        if reservation is not None:
            self.gw.budgets.settle(reservation, charge.cost_micro_usd)
            self.gw.signal_settled()
        ctx.cost_micro_usd += charge.cost_micro_usd
        ctx.basis = charge.basis
        ctx.usage = charge.usage
        if charge.basis == "unpriced":
            self.gw.metrics.unpriced.labels(self._guard_model(target)).inc()
        entry = Entry(
            time=format_time(datetime.now(UTC)),
            request_id=ctx.request_id,
            attribution=entry_attribution(ctx.attribution),
            connection=target.connection,
            provider=target.provider,
            model=target.model,
            requested_model=ctx.requested_model,
            tier=ctx.tier,
            verdict=ctx.verdict,
            usage=entry_usage(charge.usage),
            cost_micro_usd=charge.cost_micro_usd,
            cost_basis=charge.basis,  # type: ignore[arg-type]
            status=status,
            budget_scopes=reservation.policies if reservation is not None else (),
        )
        ctx.ledger_writes.append(self.gw.spawn(self._write(entry)))
        self._count_spend(ctx, target, charge)

    async def durable(self, ctx: RequestContext) -> None:
        """Wait until this request's ledger lines are written (handed to the kernel; fdatasynced too
        with ``--ledger-sync``): call it before the reply's last byte or a stream's terminator leaves."""
        if ctx.ledger_writes:
            writes, ctx.ledger_writes = ctx.ledger_writes, []
            await asyncio.shield(asyncio.gather(*writes))

    async def _write(self, entry: Entry) -> None:
        try:
            await self.gw.ledger.append(entry)
        except LedgerError as exc:
            log.error("ledger write failed, entry kept for retry: %s", exc)
        self.gw.metrics.ledger_healthy.set(1 if self.gw.ledger.healthy else 0)

    def _guard_model(self, target: Target) -> str:
        served = self.gw.served
        name = f"{target.connection}/{target.model}"
        return served.guard.model(name) if served else "other"

    def _labels(self, ctx: RequestContext, target: Target | None) -> tuple[str, ...]:
        served = self.gw.served
        dims = ctx.attribution.dimensions
        pod = ctx.attribution.pod
        if served is None:
            return (pod.namespace, pod.workload, "", "", "", "", "", "")
        guard = served.guard
        return (
            pod.namespace,
            pod.workload,
            guard.free("team", dims.get("team")),
            guard.free("service", dims.get("service")),
            guard.free("feature", dims.get("feature")),
            self._guard_model(target) if target else "",
            target.provider if target else "",
            guard.tier(ctx.tier),
        )

    def _count_spend(self, ctx: RequestContext, target: Target, charge: Charge) -> None:
        labels = self._labels(ctx, target)
        m = self.gw.metrics
        if charge.cost_micro_usd:
            m.spend.labels(*labels).inc(charge.cost_micro_usd / 1_000_000)
        usage = charge.usage
        if usage is not None:
            m.tokens.labels(*labels, "input").inc(usage.input_tokens)
            m.tokens.labels(*labels, "output").inc(usage.output_tokens)
            if usage.cached_input_tokens:
                m.tokens.labels(*labels, "cached").inc(usage.cached_input_tokens)

    def finish(self, ctx: RequestContext, status: int | str) -> None:
        """Count the request and write its log line (once per client request)."""
        ctx.status = status
        elapsed = time.perf_counter() - ctx.started
        m = self.gw.metrics
        labels = self._labels(ctx, ctx.routed)
        m.requests.labels(*labels, str(status), ctx.verdict).inc()
        m.duration.labels(labels[-1]).observe(elapsed)
        m.overhead.observe(max(0.0, elapsed - ctx.upstream_seconds))
        if self.gw.settings.access_log:
            self._log_line(ctx, elapsed)

    def _log_line(self, ctx: RequestContext, elapsed: float) -> None:
        usage = ctx.usage
        target = ctx.routed
        line = {
            "ts": format_time(ctx.wall),
            "requestId": ctx.request_id,
            "op": ctx.op,
            "namespace": ctx.attribution.pod.namespace,
            "workload": ctx.attribution.pod.workload,
            "attribution": dict(ctx.attribution.dimensions),
            "tags": dict(ctx.attribution.tags),
            "requestedModel": ctx.requested_model,
            "routedModel": f"{target.provider}/{target.model}" if target else None,
            "connection": target.connection if target else None,
            "tier": ctx.tier,
            "verdict": ctx.verdict,
            "fallbacks": ctx.fallbacks,
            "status": ctx.status,
            "tokens": None
            if usage is None
            else {
                "input": usage.input_tokens,
                "output": usage.output_tokens,
                "cached": usage.cached_input_tokens,
            },
            "costUSD": ctx.cost_micro_usd / 1_000_000,
            "costBasis": ctx.basis,
            "upstreamMs": round(ctx.upstream_seconds * 1000, 3),
            "totalMs": round(elapsed * 1000, 3),
        }
        sys.stdout.buffer.write(msgspec.json.encode(line) + b"\n")
