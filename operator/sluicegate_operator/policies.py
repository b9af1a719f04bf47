"""Render RoutingTiers and BudgetPolicies into the config's tiers and budgets. Pure.

Thresholds and ladder steps are fractions in (0, 1] on the resources, parts per million in the config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sluicegate_contract.money import PPM
from sluicegate_contract.schema import (
    Alerts,
    Budget,
    Candidate,
    Fallback,
    LadderStep,
    Limit,
    Provider,
    StaticAllowance,
    Tier,
    Webhook,
)
from sluicegate_contract.schema import AutoRule as AutoRuleSchema
from sluicegate_contract.usable import budget_problems

from .crparse import BudgetPolicySpec, Meta, ResourceError, RoutingTierSpec
from .prices import usd_per_mtok_to_micro
from .resourcereport import ResourceReport


def render_tier(
    meta: Meta, spec: RoutingTierSpec, providers: Mapping[str, Provider]
) -> tuple[Tier, ResourceReport]:
    kept: list[Candidate] = []
    shown: list[tuple[str, str, bool]] = []
    not_ready: list[str] = []
    for c in spec.candidates:
        provider = providers.get(c.connection)
        model = None
        if provider is not None:
            model = next((m for m in provider.models if c.model in (m.name, m.alias)), None)
        if provider is None or model is None:
            not_ready.append(f"{c.connection}/{c.model}")
            shown.append((c.connection, c.model, False))
            continue
        kept.append(Candidate(connection=c.connection, model=model.name, weight=c.weight))
        shown.append((c.connection, model.name, True))
    auto = None
    if spec.auto is not None:
        a = spec.auto
        auto = AutoRuleSchema(
            enabled=a.enabled,
            max_prompt_tokens=a.max_prompt_tokens,
            max_output_tokens=a.max_output_tokens,
            allow_tools=a.allow_tools,
            allow_vision=a.allow_vision,
            allow_json=a.allow_json,
        )
    tier = Tier(
        name=meta.name,
        rank=spec.rank,
        strategy=spec.strategy,
        candidates=tuple(kept),
        fallback=Fallback(max_retries=spec.fallback.max_retries, retry_on=tuple(spec.fallback.retry_on)),
        auto=auto,
    )
    if not kept:
        reason, message, ready = "NoCandidates", "no candidate's connection and model are ready", False
    elif not_ready:
        reason, message, ready = "CandidatesNotReady", f"not ready: {', '.join(not_ready)}", True
    else:
        reason, message, ready = "Resolved", f"{len(kept)} candidates", True
    report = ResourceReport(
        kind=meta.kind,
        name=meta.name,
        ready=ready,
        reason=reason,
        message=message,
        candidates=tuple(shown),
        not_ready=tuple(not_ready),
    )
    return tier, report


def _ppm(fraction: float, what: str, meta: Meta) -> int:
    if not math.isfinite(fraction):
        raise ResourceError(meta.kind, meta.name, f"{what} must be in (0, 1], got {fraction}")
    value = round(fraction * PPM)
    if not 0 < value <= PPM:
        raise ResourceError(meta.kind, meta.name, f"{what} must be in (0, 1], got {fraction}")
    return value


def _allowance(meta: Meta, spec: BudgetPolicySpec) -> StaticAllowance | None:
    allowance = spec.static_allowance
    if allowance is None:
        return None
    if not math.isfinite(allowance.amount_usd):
        raise ResourceError(meta.kind, meta.name, "spec.staticAllowance.amountUSD: not a usable amount")
    return StaticAllowance(
        amount_micro_usd=usd_per_mtok_to_micro(allowance.amount_usd), seconds=allowance.seconds
    )


def render_budget(meta: Meta, spec: BudgetPolicySpec) -> Budget:
    if spec.downgrade_to is None and (
        spec.action == "DOWNGRADE" or any(step.action == "DOWNGRADE" for step in spec.ladder)
    ):
        raise ResourceError(meta.kind, meta.name, "spec.downgradeTo is required for DOWNGRADE")
    limits = []
    for i, limit in enumerate(spec.limits):
        if not math.isfinite(limit.amount_usd):
            raise ResourceError(meta.kind, meta.name, f"spec.limits[{i}].amountUSD: not a usable amount")
        amount = usd_per_mtok_to_micro(limit.amount_usd)
        if amount <= 0:
            raise ResourceError(meta.kind, meta.name, "spec.limits[].amountUSD must be > 0")
        limits.append(Limit(window=limit.window, amount_micro_usd=amount, timezone=limit.timezone))
    budget = Budget(
        name=meta.name,
        uid=meta.uid,
        selector=dict(spec.selector.match_labels),
        split_by=spec.split_by,
        limits=tuple(limits),
        action=spec.action,
        downgrade_to=spec.downgrade_to,
        ladder=tuple(
            sorted(
                (
                    LadderStep(at_ppm=_ppm(s.at, "spec.ladder[].at", meta), action=s.action)
                    for s in spec.ladder
                ),
                key=lambda s: s.at_ppm,
            )
        ),
        alerts=Alerts(
            thresholds_ppm=tuple(
                sorted(_ppm(t, "spec.alerts.thresholds[]", meta) for t in spec.alerts.thresholds)
            ),
            webhooks=tuple(
                Webhook(
                    url_secret_name=w.url_secret_ref.name,
                    url_secret_key=w.url_secret_ref.key,
                    format=w.format,
                )
                for w in spec.alerts.webhooks
            ),
        ),
        kill_switch=spec.kill_switch,
        mode=spec.mode,
        allow_unpriced=spec.allow_unpriced,
        fail_mode=spec.fail_mode,
        static_allowance=_allowance(meta, spec),
    )
    # Values the CRD accepts but a sidecar cannot use (fault 33): the whole render fails (budgets fail
    # closed), so the last good config keeps serving and this policy's condition names the field.
    problems = budget_problems(budget)
    if problems:
        raise ResourceError(meta.kind, meta.name, "; ".join(f"{f}: {m}" for f, m in problems))
    return budget
