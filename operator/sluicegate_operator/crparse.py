"""Strict parsing of the custom resources' specs (crds/). Pure.

Unknown fields and wrong types are errors that name the resource and the field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec

from sluicegate_contract.schema import (
    Action,
    FailMode,
    Mode,
    ProviderKind,
    RetryClass,
    SplitBy,
    Strategy,
    Window,
)

GROUP = "sluicegate.io"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {  # every kind of the group and its plural: the one table of the custom resources
    "ProviderConnection": "providerconnections",
    "RoutingTier": "routingtiers",
    "BudgetPolicy": "budgetpolicies",
}
KINDS = tuple(PLURALS)


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    pass


class SecretRef(_Spec, frozen=True):
    name: str
    key: str = "apiKey"


class AzureSpec(_Spec, frozen=True):
    api_version: str
    deployments: dict[str, str] = {}


class PricingSpec(_Spec, frozen=True):
    input_per_m_tok: float = msgspec.field(name="inputPerMTok")
    output_per_m_tok: float = msgspec.field(name="outputPerMTok")
    cached_input_per_m_tok: float | None = msgspec.field(default=None, name="cachedInputPerMTok")
    cache_write_per_m_tok: float | None = msgspec.field(default=None, name="cacheWritePerMTok")


class ModelSpec(_Spec, frozen=True):
    name: str
    alias: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    pricing: PricingSpec | None = None


class TimeoutsSpec(_Spec, frozen=True):
    connect_seconds: float = 5.0
    first_byte_seconds: float = 60.0
    idle_seconds: float = 30.0
    total_seconds: float = 600.0


class MockSpec(_Spec, frozen=True):
    latency_ms: int = 0
    failure_rate: float = 0.0
    stream_chunk_delay_ms: int = 0
    seed: int = 0


class ProviderConnectionSpec(_Spec, frozen=True):
    provider: ProviderKind
    models: list[ModelSpec]
    base_url: str | None = msgspec.field(default=None, name="baseURL")
    api_key_secret_ref: SecretRef | None = None
    azure: AzureSpec | None = None
    timeouts: TimeoutsSpec = TimeoutsSpec()
    mock: MockSpec | None = None


class CandidateSpec(_Spec, frozen=True):
    connection: str
    model: str
    weight: int = 1


class FallbackSpec(_Spec, frozen=True):
    max_retries: int = 2
    retry_on: list[RetryClass] = msgspec.field(default_factory=lambda: ["429", "5xx", "timeout", "connect"])


class AutoSpec(_Spec, frozen=True):
    enabled: bool = True
    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    allow_tools: bool = True
    allow_vision: bool = True
    allow_json: bool = True


class RoutingTierSpec(_Spec, frozen=True):
    rank: int
    candidates: list[CandidateSpec]
    strategy: Strategy = "cheapest"
    fallback: FallbackSpec = FallbackSpec()
    auto: AutoSpec | None = None


class SelectorSpec(_Spec, frozen=True):
    match_labels: dict[str, str] = {}


class LimitSpec(_Spec, frozen=True):
    window: Window
    amount_usd: float = msgspec.field(name="amountUSD")
    timezone: str = "UTC"


class StaticAllowanceSpec(_Spec, frozen=True):
    amount_usd: float = msgspec.field(name="amountUSD")
    seconds: int


class LadderSpec(_Spec, frozen=True):
    at: float
    action: Action


class WebhookSpec(_Spec, frozen=True):
    url_secret_ref: SecretRef
    format: Literal["slack", "generic"] = "generic"


class AlertsSpec(_Spec, frozen=True):
    thresholds: list[float] = msgspec.field(default_factory=lambda: [0.5, 0.8, 1.0])
    webhooks: list[WebhookSpec] = []


class BudgetPolicySpec(_Spec, frozen=True):
    limits: list[LimitSpec]
    selector: SelectorSpec = SelectorSpec()
    split_by: SplitBy = "none"
    action: Action = "BLOCK"
    downgrade_to: str | None = None
    ladder: list[LadderSpec] = []
    alerts: AlertsSpec = AlertsSpec()
    kill_switch: bool = False
    mode: Mode = "Enforce"
    allow_unpriced: bool = False
    fail_mode: FailMode = "closed"
    static_allowance: StaticAllowanceSpec | None = None


SpecT = TypeVar("SpecT", ProviderConnectionSpec, RoutingTierSpec, BudgetPolicySpec)
SPEC_TYPES: dict[str, type[Any]] = {
    "ProviderConnection": ProviderConnectionSpec,
    "RoutingTier": RoutingTierSpec,
    "BudgetPolicy": BudgetPolicySpec,
}


class ResourceError(Exception):
    """A resource that cannot be used, named as ``Kind/name: problem (at field path)``."""

    def __init__(self, kind: str, name: str, problem: str) -> None:
        super().__init__(f"{kind}/{name}: {problem}")
        self.kind = kind
        self.name = name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Meta:
    kind: str
    name: str
    namespace: str | None
    uid: str
    generation: int


def meta_of(obj: Mapping[str, Any]) -> Meta:
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        raise ResourceError(str(obj.get("kind", "?")), "?", "metadata.name is missing")
    namespace = metadata.get("namespace")
    return Meta(
        kind=str(obj.get("kind", "")),
        name=metadata["name"],
        namespace=namespace if isinstance(namespace, str) else None,
        uid=str(metadata.get("uid") or ""),
        generation=int(metadata.get("generation") or 0),
    )


def _field_path(message: str) -> str:
    if " - at `$" not in message:
        return message + " - at `spec`"
    return message.replace("`$.", "`spec.").replace("`$`", "`spec`")


def parse_spec(obj: Mapping[str, Any], spec_type: type[SpecT]) -> SpecT:
    meta = meta_of(obj)
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ResourceError(meta.kind, meta.name, "spec is missing or not an object")
    try:
        return msgspec.convert(spec, type=spec_type, strict=False)
    except msgspec.ValidationError as exc:
        raise ResourceError(meta.kind, meta.name, _field_path(str(exc))) from None
