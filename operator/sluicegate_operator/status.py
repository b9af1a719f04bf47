"""Status of the custom resources from render's reports: conditions with observedGeneration, and transitions.

Pure: no kopf, no Kubernetes client; the time is an argument. A condition keeps its
``lastTransitionTime`` while its status stays the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sluicegate_contract.money import MICRO_USD
from sluicegate_contract.schema import Config, Model
from sluicegate_contract.timestamps import format_time

from .resourcereport import ResourceReport

ConditionStatus = Literal["True", "False", "Unknown"]
_KEY_REASONS = frozenset({"SecretNotFound", "SecretKeyMissing"})
# Announced when they turn False (Warning) and when they recover from False (Normal), never on a first
# True or Unknown: a first install or a restart of thousands of namespaces posts no Event per resource
# (the config Secret's one "Sealed" Event says the namespace was sealed). KeyResolved/Sealed changes
# repeat Ready's reason.
_ANNOUNCED_WHEN_FALSE = frozenset({"Ready", "CandidatesReady", "ModelsCurrent"})


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A condition whose status changed (or appeared): worth a Kubernetes Event."""

    condition: Condition
    previous: str | None

    @property
    def event_type(self) -> Literal["Normal", "Warning"]:
        return "Normal" if self.condition.status == "True" else "Warning"

    @property
    def event_message(self) -> str:
        c = self.condition
        return f"{c.type} is {c.status}: {c.message}" if c.message else f"{c.type} is {c.status}"


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """The status fields the operator owns for one resource, and the transitions they make."""

    fields: Mapping[str, Any]
    transitions: tuple[Transition, ...]

    def differs_from(self, current: Mapping[str, Any] | None) -> bool:
        current = current or {}
        return any(current.get(key) != value for key, value in self.fields.items())

    @property
    def events(self) -> tuple[Transition, ...]:
        """The transitions worth a Kubernetes Event (one per change a person should see)."""
        return tuple(t for t in self.transitions if _went_or_left_false(t))

    def as_patch(self) -> dict[str, Any]:
        return {"status": dict(self.fields)}


def _went_or_left_false(t: Transition) -> bool:
    return t.condition.type in _ANNOUNCED_WHEN_FALSE and "False" in (t.condition.status, t.previous)


def _truth(flag: bool) -> ConditionStatus:
    return "True" if flag else "False"


def merge_conditions(
    desired: Sequence[Condition],
    existing: Sequence[Mapping[str, Any]] | None,
    *,
    generation: int,
    now: datetime,
) -> tuple[list[dict[str, Any]], tuple[Transition, ...]]:
    """The conditions list to write, and which statuses changed.

    Conditions of other types already present (written by someone else) are kept as they are.
    """
    by_type = {str(c.get("type")): c for c in existing or () if isinstance(c, Mapping)}
    ours = {c.type for c in desired}
    out: list[dict[str, Any]] = []
    changes: list[Transition] = []
    for cond in desired:
        before = by_type.get(cond.type)
        previous = None if before is None else str(before.get("status"))
        if previous == cond.status and before is not None and before.get("lastTransitionTime"):
            since = str(before["lastTransitionTime"])
        else:
            since = format_time(now)
            changes.append(Transition(condition=cond, previous=previous))
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }
        )
    out.extend(dict(c) for t, c in by_type.items() if t not in ours)
    return out, tuple(changes)


def models_current(report: ResourceReport) -> Condition:
    """ModelsCurrent: False while a declared model is past its provider's retirement date or
    deprecated (render's warnings), so ``kubectl describe`` and an Event show what render prints."""
    if not report.ready:
        return Condition("ModelsCurrent", "Unknown", "NotSealed", "checked once the connection is sealed")
    if not report.warnings:
        return Condition(
            "ModelsCurrent", "True", "ModelsCurrent", "no declared model is retired or deprecated"
        )
    retired = any(" was retired " in w for w in report.warnings)
    return Condition(
        "ModelsCurrent", "False", "ModelRetired" if retired else "ModelDeprecated", "; ".join(report.warnings)
    )


def connection_conditions(report: ResourceReport) -> list[Condition]:
    """Ready, KeyResolved, Sealed and ModelsCurrent for a ProviderConnection."""
    if report.ready:
        key = (
            Condition("KeyResolved", "True", "KeyResolved", f"key fingerprint {report.key_fingerprint}")
            if report.key_fingerprint
            else Condition("KeyResolved", "True", "NoKeyNeeded", "this provider needs no key")
        )
        sealed = Condition("Sealed", "True", report.reason, report.message)
        ready = Condition("Ready", "True", "Ready", report.message)
        return [ready, key, sealed, models_current(report)]
    if report.reason in _KEY_REASONS:
        key = Condition("KeyResolved", "False", report.reason, report.message)
    else:
        key = Condition("KeyResolved", "Unknown", "SpecInvalid", "the spec must be fixed first")
    sealed = Condition("Sealed", "False", report.reason, "left out of the sealed config")
    return [Condition("Ready", "False", report.reason, report.message), key, sealed, models_current(report)]


def tier_conditions(report: ResourceReport) -> list[Condition]:
    resolved = Condition(
        "CandidatesReady",
        _truth(not report.not_ready),
        "AllReady" if not report.not_ready else "CandidatesNotReady",
        "all candidates are ready" if not report.not_ready else f"not ready: {', '.join(report.not_ready)}",
    )
    return [Condition("Ready", _truth(report.ready), report.reason, report.message), resolved]


def budget_conditions(report: ResourceReport) -> list[Condition]:
    return [Condition("Ready", _truth(report.ready), report.reason, report.message)]


def failed_budget_report(name: str, message: str) -> ResourceReport:
    """A BudgetPolicy that made the whole render fail (budgets fail closed)."""
    return ResourceReport(kind="BudgetPolicy", name=name, ready=False, reason="InvalidSpec", message=message)


def _usd(micro: int | None) -> str | None:
    if micro is None:
        return None
    return format((Decimal(micro) / MICRO_USD).normalize(), "f")


def _model_status(model: Model) -> dict[str, Any]:
    out: dict[str, Any] = {"name": model.name}
    if model.alias:
        out["alias"] = model.alias
    if model.price is None:
        out["priced"] = False
        return out
    rates = model.price.base
    out.update(
        {
            "priced": True,
            "priceSource": model.price.source,
            "inputPerMTok": _usd(rates.input_per_mtok),
            "outputPerMTok": _usd(rates.output_per_mtok),
        }
    )
    if rates.cached_input_per_mtok is not None:
        out["cachedInputPerMTok"] = _usd(rates.cached_input_per_mtok)
    return out


def _candidate_price(config: Config | None, connection: str, model: str) -> tuple[int, int]:
    """Sort key: priced candidates by input+output rate, unpriced ones last."""
    if config is not None:
        for provider in config.providers:
            if provider.name != connection:
                continue
            for m in provider.models:
                if m.name == model and m.price is not None:
                    return 0, m.price.base.input_per_mtok + m.price.base.output_per_mtok
    return 1, 0


def build_status(
    report: ResourceReport,
    obj: Mapping[str, Any],
    *,
    config: Config | None,
    now: datetime,
) -> StatusUpdate:
    """The status fields and transitions for one resource of any of the three kinds."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    generation = int(metadata.get("generation") or 0)
    if report.kind == "ProviderConnection":
        desired = connection_conditions(report)
    elif report.kind == "RoutingTier":
        desired = tier_conditions(report)
    else:
        desired = budget_conditions(report)
    conditions, changes = merge_conditions(desired, status.get("conditions"), generation=generation, now=now)
    fields: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
    if report.kind == "ProviderConnection":
        fields["keyFingerprint"] = report.key_fingerprint
        fields["models"] = [_model_status(m) for m in report.models]
    elif report.kind == "RoutingTier":
        ordered = sorted(report.candidates, key=lambda c: (not c[2], *_candidate_price(config, c[0], c[1])))
        fields["candidates"] = [{"connection": c, "model": m, "ready": r} for c, m, r in ordered]
        fields["notReady"] = list(report.not_ready)
    return StatusUpdate(fields=fields, transitions=changes)
