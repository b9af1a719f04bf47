"""Settling what an attempt cost: budget counters, the ledger line, metrics and the request log.

The charge rules (fault 27) are pure functions; ``Accountant`` applies them to the runtime state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from datetime import UTC, datetime

import msgspec

from sluicegate_contract.ledger import ENTRY_VERSION, Entry, EntryDecision, EntryResolution, format_time
from sluicegate_contract.ledgerfiles import LedgerError
from sluicegate_contract.schema import ModelPrice

from .budget import Reservation
from .context import RequestContext
from .ledger.records import entry_attribution, entry_reported_usage, entry_usage
from .pricing import cost_micro_usd, max_output_tokens_within
from .providers.base import ReportedUsage, Usage
from .providers.usagefields import ANOMALY_REASONS, valid_count
from .routing.catalog import Target
from .runtime import Gateway
from .tokens import estimate_output_tokens_from_chars

log = logging.getLogger("sluicegate.sidecar")


class Charge(msgspec.Struct, frozen=True, gc=False):
    cost_micro_usd: int
    basis: str  # exact | estimated | unpriced | anomalous
    usage: Usage | None  # for anomalous: the bounded figures charged
    anomaly: str | None = None  # why the usage was anomalous (a ``usagefields.ANOMALY_REASONS`` value)
    reported: ReportedUsage | None = None  # for anomalous: what the upstream reported


class Bounds(msgspec.Struct, frozen=True, gc=False):
    """What one attempt's reservation assumed: the most a correct upstream can report for it.

    ``prompt_tokens`` is the input the reservation counted (the request's input bound);
    ``output_tokens`` the output (all completions together) it pays for on top of that, None when
    nothing bounds it (no cap was sent and the model's limit is unknown); ``context_window`` is set
    when the request is one model input, which no correct provider reports more of.
    """

    prompt_tokens: int
    output_tokens: int | None = None
    context_window: int | None = None


def attempt_bounds(
    price: ModelPrice | None,
    prompt_tokens: int,
    reserved_micro_usd: int,
    send_cap: int | None,
    model_max: int | None,
    outputs: int,
    context_window: int | None,
) -> Bounds:
    """The bounds of an attempt that reserved ``reserved_micro_usd`` for ``prompt_tokens`` of input and
    sent the output cap ``send_cap`` (None: none was sent, the model's own limit ``model_max`` applies).
    Derived from the reservation itself, so every output admission counted is in it; ``outputs`` (how
    many completions the request can produce) serves only unpriced models."""
    cap = send_cap if send_cap is not None else model_max
    if cap is None:
        return Bounds(prompt_tokens, None, context_window)
    if price is None or reserved_micro_usd <= 0:
        return Bounds(prompt_tokens, cap * max(outputs, 1), context_window)
    affordable = max_output_tokens_within(price, prompt_tokens, 1, reserved_micro_usd)
    return Bounds(prompt_tokens, affordable, context_window)


def usage_anomaly(usage: Usage, bounds: Bounds | None) -> str | None:
    """Why ``usage`` cannot be what a correct upstream reports for this attempt (None: it can)."""
    if usage.anomaly is not None:
        return usage.anomaly
    if bounds is None:
        return None
    if bounds.output_tokens is not None and usage.output_tokens > bounds.output_tokens:
        return "output_over_cap"
    if bounds.context_window is not None and usage.input_tokens > bounds.context_window:
        return "input_over_context"
    return None


def anomalous_charge(
    price: ModelPrice | None, usage: Usage, reason: str, reserved_micro_usd: int, bounds: Bounds
) -> Charge:
    """Charge a usage no correct upstream reports (fault 30) at a bounded figure, at most the reservation.

    Each figure is kept when it is valid and within the bounds; otherwise input counts as the
    reservation's prompt estimate and output as the output the reservation pays for (the whole
    reservation when nothing bounds the output). The reported figures are kept beside it.
    """
    reported = usage.reported or ReportedUsage(
        usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cache_write_tokens
    )
    window = bounds.context_window
    input_ok = reported.input_tokens == usage.input_tokens and valid_count(usage.input_tokens)
    input_ok = input_ok and (window is None or usage.input_tokens <= window)
    cap = bounds.output_tokens
    output_ok = reported.output_tokens == usage.output_tokens and valid_count(usage.output_tokens)
    output_ok = output_ok and (cap is None or usage.output_tokens <= cap)
    input_tokens = usage.input_tokens if input_ok else bounds.prompt_tokens
    cached = (
        usage.cached_input_tokens
        if input_ok and reported.cached_input_tokens == usage.cached_input_tokens
        else 0
    )
    written = (
        usage.cache_write_tokens
        if input_ok and reported.cache_write_tokens == usage.cache_write_tokens
        else 0
    )
    output = usage.output_tokens if output_ok else (cap or 0)
    bounded = Usage(
        input_tokens,
        output,
        min(cached, input_tokens),
        min(written, input_tokens - min(cached, input_tokens)),
    )
    if price is None:
        return Charge(0, "anomalous", bounded, reason, reported)
    cost = cost_micro_usd(price, bounded)
    if not output_ok and cap is None:
        cost = max(cost, reserved_micro_usd)  # nothing bounds the output: the reservation is the figure
    if reserved_micro_usd > 0:
        cost = min(cost, reserved_micro_usd)
    return Charge(cost, "anomalous", bounded, reason, reported)


def charge_for(
    price: ModelPrice | None,
    usage: Usage | None,
    reserved_micro_usd: int,
    prompt_tokens: int,
    output_chars: int | None,
    bounds: Bounds | None = None,
) -> Charge:
    """What to debit. Reported usage is exact, unless no correct upstream could report it (an
    anomaly: a bounded figure, at most the reservation); without usage, the smaller of the reservation
    and the streamed-token estimate, but never below what was seen (``output_chars`` None: nothing
    known). Estimates never exceed the output ``bounds`` allow: the estimate errs high, not the upstream."""
    if usage is not None:
        reason = usage_anomaly(usage, bounds)
        if reason is not None:
            return anomalous_charge(price, usage, reason, reserved_micro_usd, bounds or Bounds(prompt_tokens))
    if price is None:
        return Charge(0, "unpriced", usage)
    if usage is not None:
        return Charge(cost_micro_usd(price, usage), "exact", usage)
    if output_chars is None:
        return Charge(reserved_micro_usd, "estimated", None)
    seen_tokens = estimate_output_tokens_from_chars(output_chars)
    if bounds is not None and bounds.output_tokens is not None:
        seen_tokens = min(seen_tokens, bounds.output_tokens)
    seen = Usage(input_tokens=0, output_tokens=seen_tokens)
    estimate = Usage(input_tokens=prompt_tokens, output_tokens=seen_tokens)
    cost = max(min(reserved_micro_usd, cost_micro_usd(price, estimate)), cost_micro_usd(price, seen))
    return Charge(cost, "estimated", estimate)


def _resolution(ctx: RequestContext) -> EntryResolution | None:
    if ctx.resolved is None:
        return None
    return EntryResolution(kind=ctx.resolved, tier=ctx.tier, reason=ctx.auto_reason)


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
        if charge.anomaly is not None:
            reason = charge.anomaly if charge.anomaly in ANOMALY_REASONS else "malformed"
            self.gw.metrics.usage_anomalies.labels(target.provider, reason).inc()
            log.warning(
                "upstream usage anomaly (%s) from %s/%s, request %s: charged the bounded figure",
                reason,
                target.connection,
                target.model,
                ctx.request_id,
            )
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
            reported_usage=entry_reported_usage(charge.reported),
            anomaly=charge.anomaly,
            v=ENTRY_VERSION,
            resolution=_resolution(ctx),
            decision=EntryDecision(action=ctx.action, shadow=ctx.shadow_action, policy=ctx.verdict_policy),
        )
        write = self.gw.ledger.submit(entry)  # a future, not a task: the write never needs the client
        write.add_done_callback(functools.partial(self._written, reservation))
        ctx.ledger_writes.append(write)
        self._count_spend(ctx, target, charge)

    async def durable(self, ctx: RequestContext) -> None:
        """Wait until this request's ledger lines are written (handed to the kernel; fdatasynced too
        with ``--ledger-sync``): call it before the reply's last byte or a stream's terminator leaves.
        A line the disk refused is kept for retry by the ledger (``_written`` logs it); a cancelled
        request drops only its wait, never the write. With no other request holding a reservation, no
        other line can join this loop turn's write: it is written at once, not a loop turn later."""
        if ctx.ledger_writes:
            writes, ctx.ledger_writes = ctx.ledger_writes, []
            if not writes[-1].done() and self.gw.budgets.outstanding == 0:
                self.gw.ledger.write_now()  # no other request holds a reservation: none can join the write
            for write in writes:
                if not write.done():
                    with contextlib.suppress(LedgerError):  # logged by ``_written``, kept for retry
                        await asyncio.shield(write)  # a cancelled request never cancels the write's outcome

    def _written(self, reservation: Reservation | None, write: asyncio.Future[Entry]) -> None:
        """A ledger write's outcome (a done-callback: it runs once the line is written, before the
        ``durable`` that waits for it returns, or just after one that found it written at once)."""
        exc = None if write.cancelled() else write.exception()  # ``durable`` waits through a shield
        if exc is None and not write.cancelled():
            if reservation is not None:  # fleet mode journals it settled only once the ledger shows it
                self.gw.budgets.recorded(reservation, write.result().cost_micro_usd)
        else:
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
            m.spend_by(*labels).inc(charge.cost_micro_usd / 1_000_000)
        usage = charge.usage
        if usage is not None:
            m.tokens_by(*labels, "input").inc(usage.input_tokens)
            m.tokens_by(*labels, "output").inc(usage.output_tokens)
            if usage.cached_input_tokens:
                m.tokens_by(*labels, "cached").inc(usage.cached_input_tokens)

    def finish(self, ctx: RequestContext, status: int | str) -> None:
        """Count the request and write its log line (once per client request)."""
        ctx.status = status
        elapsed = time.perf_counter() - ctx.started
        m = self.gw.metrics
        labels = self._labels(ctx, ctx.routed)
        m.requests_by(*labels, str(status), ctx.verdict).inc()
        m.duration_by(labels[-1]).observe(elapsed)
        m.overhead.observe(max(0.0, elapsed - ctx.upstream_seconds))
        if self.gw.settings.access_log:
            self._log_line(ctx, elapsed)

    def _log_line(self, ctx: RequestContext, elapsed: float) -> None:
        usage = ctx.usage
        target = ctx.routed
        line = _LogLine(
            format_time(ctx.wall),
            ctx.request_id,
            ctx.op,
            ctx.attribution.pod.namespace,
            ctx.attribution.pod.workload,
            dict(ctx.attribution.dimensions),
            dict(ctx.attribution.tags),
            ctx.requested_model,
            f"{target.provider}/{target.model}" if target else None,
            target.connection if target else None,
            ctx.tier,
            ctx.verdict,
            ctx.fallbacks,
            ctx.status,
            None
            if usage is None
            else _LogTokens(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens),
            ctx.cost_micro_usd / 1_000_000,
            ctx.basis,
            round(ctx.upstream_seconds * 1000, 3),
            round(elapsed * 1000, 3),
        )
        self.gw.access_log.write(_LOG_ENCODER.encode(line) + b"\n")


class _LogTokens(msgspec.Struct):
    input: int
    output: int
    cached: int


class _LogLine(msgspec.Struct):
    """One request log line (stdout, JSON): these keys in this order, each one present (null: unknown)."""

    ts: str
    request_id: str = msgspec.field(name="requestId")
    op: str
    namespace: str
    workload: str
    attribution: dict[str, str]
    tags: dict[str, str]
    requested_model: str = msgspec.field(name="requestedModel")
    routed_model: str | None = msgspec.field(name="routedModel")
    connection: str | None
    tier: str | None
    verdict: str
    fallbacks: list[str]
    status: int | str
    tokens: _LogTokens | None
    cost_usd: float = msgspec.field(name="costUSD")
    cost_basis: str | None = msgspec.field(name="costBasis")
    upstream_ms: float = msgspec.field(name="upstreamMs")
    total_ms: float = msgspec.field(name="totalMs")


_LOG_ENCODER = msgspec.json.Encoder()
