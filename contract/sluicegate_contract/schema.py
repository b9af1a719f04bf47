"""The sealed-config schema: what the operator writes and the sidecar reads.

Versioned and strict: unknown fields are refused. Money is integer micro-USD; prices are
integer micro-USD per million tokens. Field names on the wire are camelCase.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1

ProviderKind = Literal[
    "openai",
    "azure-openai",
    "anthropic",
    "gemini",
    "mistral",
    "groq",
    "together",
    "openai-compatible",
    "mock",
]
Strategy = Literal["cheapest", "ordered", "weighted"]
RetryClass = Literal["429", "5xx", "timeout", "connect"]
Window = Literal["day", "week", "month"]
Action = Literal["BLOCK", "DOWNGRADE", "LIGHT_ONLY"]
SplitBy = Literal["none", "team", "service", "feature", "user", "endCustomer"]
Mode = Literal["Enforce", "Shadow"]
FailMode = Literal["closed", "static"]
PriceSource = Literal["catalog", "override"]


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Base for every wire struct: immutable, strict, camelCase on the wire."""


class Rates(_Wire, frozen=True):
    """Micro-USD per million tokens. ``None`` for cached input or cache write means the input rate."""

    input_per_mtok: int
    output_per_mtok: int
    cached_input_per_mtok: int | None = None
    cache_write_per_mtok: int | None = None


class PriceTier(_Wire, frozen=True):
    """Rates that apply when a request's input tokens are above ``above_input_tokens``."""

    above_input_tokens: int
    rates: Rates


class ModelPrice(_Wire, frozen=True):
    source: PriceSource
    base: Rates
    tiers: tuple[PriceTier, ...] = ()


class Model(_Wire, frozen=True):
    """One model a connection offers. ``price`` None means unpriced (the catalog has no rate)."""

    name: str
    alias: str | None = None
    price: ModelPrice | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None


class SealedKey(_Wire, frozen=True):
    """An AES-256-GCM ciphertext of a provider key (base64 fields) under data key ``kid``."""

    kid: str
    nonce: str
    ciphertext: str


class KeyBinding(_Wire, frozen=True):
    """What the ciphertext's associated data binds it to."""

    connection: str
    uid: str
    generation: int


class Timeouts(_Wire, frozen=True):
    connect_seconds: float = 5.0
    first_byte_seconds: float = 60.0
    idle_seconds: float = 30.0
    total_seconds: float = 600.0


class Azure(_Wire, frozen=True):
    api_version: str
    deployments: dict[str, str] = {}


class MockSettings(_Wire, frozen=True):
    """Behaviour of the built-in offline provider."""

    latency_ms: int = 0
    failure_rate: float = 0.0
    stream_chunk_delay_ms: int = 0
    seed: int = 0


class Provider(_Wire, frozen=True):
    name: str
    provider: ProviderKind
    binding: KeyBinding
    base_url: str | None = None
    api_key: SealedKey | None = None
    # Set by an offline render: the kind the resource declares, now served by the mock provider.
    declared_kind: ProviderKind | None = None
    key_fingerprint: str | None = None
    azure: Azure | None = None
    mock: MockSettings | None = None
    models: tuple[Model, ...] = ()
    timeouts: Timeouts = Timeouts()


class Candidate(_Wire, frozen=True):
    connection: str
    model: str
    weight: int = 1


class Fallback(_Wire, frozen=True):
    max_retries: int = 2
    retry_on: tuple[RetryClass, ...] = ("429", "5xx", "timeout", "connect")


class AutoRule(_Wire, frozen=True):
    """When ``model: auto`` may pick this tier. ``None`` means no constraint on that dimension."""

    enabled: bool = True
    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    allow_tools: bool = True
    allow_vision: bool = True
    allow_json: bool = True


class Tier(_Wire, frozen=True):
    name: str
    rank: int
    strategy: Strategy = "cheapest"
    candidates: tuple[Candidate, ...] = ()
    fallback: Fallback = Fallback()
    auto: AutoRule | None = None


class Limit(_Wire, frozen=True):
    window: Window
    amount_micro_usd: int
    timezone: str = "UTC"


class LadderStep(_Wire, frozen=True):
    """At ``at_ppm`` parts-per-million of the cap spent, apply ``action``."""

    at_ppm: int
    action: Action


class Webhook(_Wire, frozen=True):
    url_secret_name: str
    url_secret_key: str
    format: Literal["slack", "generic"] = "generic"


class Alerts(_Wire, frozen=True):
    thresholds_ppm: tuple[int, ...] = (500_000, 800_000, 1_000_000)
    webhooks: tuple[Webhook, ...] = ()


class StaticAllowance(_Wire, frozen=True):
    """``failMode: static``: what one sidecar may spend per scope once its lease has run out while the
    budget authority cannot be reached, and for how long, per outage (reserved worst case, as always)."""

    amount_micro_usd: int
    seconds: int


class Budget(_Wire, frozen=True, omit_defaults=True):
    """A BudgetPolicy. Fields at their defaults are left out of the sealed JSON, so a field added with
    a default (``failMode``) leaves every config that does not use it readable by older sidecars."""

    name: str
    uid: str
    selector: dict[str, str] = {}
    split_by: SplitBy = "none"
    limits: tuple[Limit, ...] = ()
    action: Action = "BLOCK"
    downgrade_to: str | None = None
    ladder: tuple[LadderStep, ...] = ()
    alerts: Alerts = Alerts()
    kill_switch: bool = False
    mode: Mode = "Enforce"
    allow_unpriced: bool = False
    fail_mode: FailMode = "closed"  # fleet mode, lease spent and authority unreachable: 503 or allowance
    static_allowance: StaticAllowance | None = None  # with fail_mode "static"


class Config(_Wire, frozen=True):
    schema_version: int
    namespace: str
    serial: int
    issued_at: str
    not_before: str
    not_after: str
    signing_key_id: str
    price_catalog_version: str
    content_hash: str
    providers: tuple[Provider, ...] = ()
    tiers: tuple[Tier, ...] = ()
    budgets: tuple[Budget, ...] = ()
