"""Render one namespace's custom resources and Secrets into its sealed config. Pure.

A broken ProviderConnection or RoutingTier degrades only itself (reported, left out); a broken
BudgetPolicy fails the whole render, since leaving a budget out would lift its cap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from msgspec.structs import replace

from sluicegate_contract.schema import (
    SCHEMA_VERSION,
    Alerts,
    Azure,
    Budget,
    Candidate,
    Config,
    Fallback,
    KeyBinding,
    LadderStep,
    Limit,
    MockSettings,
    Model,
    ModelPrice,
    Provider,
    Rates,
    SealedKey,
    Tier,
    Timeouts,
    Webhook,
)
from sluicegate_contract.schema import AutoRule as AutoRuleSchema
from sluicegate_contract.sealing import (
    DataKey,
    SigningKey,
    canonical,
    format_time,
    key_fingerprint,
    seal_config,
    seal_key,
)

from .crparse import (
    BudgetPolicySpec,
    Meta,
    ModelSpec,
    ProviderConnectionSpec,
    ResourceError,
    RoutingTierSpec,
    meta_of,
    parse_spec,
)
from .prices import catalog_price, catalog_version, usd_per_mtok_to_micro

VALIDITY = timedelta(days=30)
_PPM = 1_000_000


class RenderError(Exception):
    """The namespace cannot be rendered at all; the last good config must keep serving.

    ``kind`` and ``name`` name the resource at fault.
    """

    def __init__(self, message: str, kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


@dataclass(frozen=True, slots=True)
class ResourceReport:
    """What render learned about one resource, for its status conditions."""

    kind: str
    name: str
    ready: bool
    reason: str
    message: str
    key_fingerprint: str | None = None
    models: tuple[Model, ...] = ()
    candidates: tuple[tuple[str, str, bool], ...] = ()
    not_ready: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RenderResult:
    config: Config
    config_json: bytes
    config_sig: bytes
    content_hash: str
    reports: Mapping[tuple[str, str], ResourceReport] = field(default_factory=dict)


def secrets_from_objects(objects: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, bytes]]:
    """Secret objects → {name: {key: raw bytes}}, folding ``stringData`` over ``data``."""
    out: dict[str, dict[str, bytes]] = {}
    for obj in objects:
        if obj.get("kind") != "Secret":
            continue
        name = meta_of(obj).name
        values: dict[str, bytes] = {}
        for key, text in (obj.get("data") or {}).items():
            try:
                values[key] = base64.b64decode(str(text), validate=True)
            except binascii.Error:
                raise ResourceError("Secret", name, f"data.{key} is not base64") from None
        for key, text in (obj.get("stringData") or {}).items():
            values[key] = str(text).encode("utf-8")
        out[name] = values
    return out


def _model_price(spec: ModelSpec, kind: str, now: datetime) -> tuple[ModelPrice | None, int | None]:
    if spec.pricing is not None:
        p = spec.pricing
        rates = Rates(
            input_per_mtok=usd_per_mtok_to_micro(p.input_per_m_tok),
            output_per_mtok=usd_per_mtok_to_micro(p.output_per_m_tok),
            cached_input_per_mtok=None
            if p.cached_input_per_m_tok is None
            else usd_per_mtok_to_micro(p.cached_input_per_m_tok),
            cache_write_per_mtok=None
            if p.cache_write_per_m_tok is None
            else usd_per_mtok_to_micro(p.cache_write_per_m_tok),
        )
        return ModelPrice(source="override", base=rates), None
    entry = catalog_price(kind, spec.name, now)
    if entry is None:
        return None, None
    return entry.price, entry.context_window


def _render_provider(
    meta: Meta,
    spec: ProviderConnectionSpec,
    namespace: str,
    secrets: Mapping[str, Mapping[str, bytes]],
    data_key: DataKey,
    now: datetime,
    offline: bool,
) -> tuple[Provider, ResourceReport, str]:
    """The provider entry, its report, and the key digest that goes into the content hash."""
    binding = KeyBinding(connection=meta.name, uid=meta.uid, generation=meta.generation)
    models: list[Model] = []
    unpriced: list[str] = []
    for m in spec.models:
        price, context = _model_price(m, spec.provider, now)
        if price is None:
            unpriced.append(m.name)
        models.append(
            Model(
                name=m.name,
                alias=m.alias,
                price=price,
                context_window=m.context_window or context,
                max_output_tokens=m.max_output_tokens,
            )
        )
    sealed: SealedKey | None = None
    fingerprint: str | None = None
    key_digest = ""
    kind = spec.provider
    if offline:
        kind = "mock"
    elif spec.provider != "mock":
        ref = spec.api_key_secret_ref
        if ref is None:
            raise ResourceError(meta.kind, meta.name, "spec.apiKeySecretRef is required for this provider")
        secret = secrets.get(ref.name)
        if secret is None:
            raise ResourceError(meta.kind, meta.name, f"Secret {ref.name!r} not found")
        raw = secret.get(ref.key)
        if raw is None:
            raise ResourceError(meta.kind, meta.name, f"Secret {ref.name!r} has no key {ref.key!r}")
        raw_key = raw.decode("utf-8").strip()
        if not raw_key:
            raise ResourceError(meta.kind, meta.name, f"Secret {ref.name!r} key {ref.key!r} is empty")
        sealed = seal_key(raw_key, data_key, namespace, binding)
        fingerprint = key_fingerprint(raw_key)
        key_digest = hashlib.sha256(raw_key.encode("utf-8")).hexdigest()
    t = spec.timeouts
    provider = Provider(
        name=meta.name,
        provider=kind,
        declared_kind=spec.provider if offline else None,
        binding=binding,
        base_url=None if offline else spec.base_url,
        api_key=sealed,
        key_fingerprint=fingerprint,
        azure=Azure(api_version=spec.azure.api_version, deployments=dict(spec.azure.deployments))
        if spec.azure is not None and not offline
        else None,
        mock=MockSettings(
            latency_ms=spec.mock.latency_ms,
            failure_rate=spec.mock.failure_rate,
            stream_chunk_delay_ms=spec.mock.stream_chunk_delay_ms,
            seed=spec.mock.seed,
        )
        if spec.mock is not None
        else (MockSettings(latency_ms=20) if offline else None),
        models=tuple(models),
        timeouts=Timeouts(
            connect_seconds=t.connect_seconds,
            first_byte_seconds=t.first_byte_seconds,
            idle_seconds=t.idle_seconds,
            total_seconds=t.total_seconds,
        ),
    )
    message = "sealed"
    if unpriced:
        message = f"sealed; no price for {', '.join(unpriced)} (refused under a budget unless allowed)"
    report = ResourceReport(
        kind=meta.kind,
        name=meta.name,
        ready=True,
        reason="Sealed",
        message=message,
        key_fingerprint=fingerprint,
        models=tuple(models),
    )
    return provider, report, key_digest


def _render_tier(
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
    value = round(fraction * _PPM)
    if not 0 < value <= _PPM:
        raise ResourceError(meta.kind, meta.name, f"{what} must be in (0, 1], got {fraction}")
    return value


def _render_budget(meta: Meta, spec: BudgetPolicySpec) -> Budget:
    if spec.downgrade_to is None and (
        spec.action == "DOWNGRADE" or any(step.action == "DOWNGRADE" for step in spec.ladder)
    ):
        raise ResourceError(meta.kind, meta.name, "spec.downgradeTo is required for DOWNGRADE")
    limits = []
    for limit in spec.limits:
        amount = usd_per_mtok_to_micro(limit.amount_usd)
        if amount <= 0:
            raise ResourceError(meta.kind, meta.name, "spec.limits[].amountUSD must be > 0")
        limits.append(Limit(window=limit.window, amount_micro_usd=amount, timezone=limit.timezone))
    return Budget(
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
    )


def _failed(meta: Meta, reason: str, message: str) -> ResourceReport:
    return ResourceReport(kind=meta.kind, name=meta.name, ready=False, reason=reason, message=message)


def _reason_of(problem: str) -> str:
    if "not found" in problem and "Secret" in problem:
        return "SecretNotFound"
    if "Secret" in problem:
        return "SecretKeyMissing"
    return "InvalidSpec"


def render_namespace(
    namespace: str,
    resources: Sequence[Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, bytes]],
    *,
    data_key: DataKey,
    signing_key: SigningKey,
    serial: int,
    now: datetime,
    offline: bool = False,
) -> RenderResult:
    """Render the resources of ``namespace`` (others are ignored) into a signed config."""
    mine = [r for r in resources if meta_of(r).namespace in (None, namespace)]
    by_kind: dict[str, list[Mapping[str, Any]]] = {
        "ProviderConnection": [],
        "RoutingTier": [],
        "BudgetPolicy": [],
    }
    for r in mine:
        by_kind.setdefault(str(r.get("kind")), []).append(r)
    reports: dict[tuple[str, str], ResourceReport] = {}
    providers: dict[str, Provider] = {}
    digests: dict[str, str] = {}
    for obj in sorted(by_kind["ProviderConnection"], key=lambda o: meta_of(o).name):
        meta = meta_of(obj)
        try:
            spec = parse_spec(obj, ProviderConnectionSpec)
            provider, report, digest = _render_provider(
                meta, spec, namespace, secrets, data_key, now, offline
            )
        except ResourceError as exc:
            reports[(meta.kind, meta.name)] = _failed(meta, _reason_of(exc.problem), exc.problem)
            continue
        providers[meta.name], digests[meta.name] = provider, digest
        reports[(meta.kind, meta.name)] = report
    tiers: dict[str, Tier] = {}
    for obj in sorted(by_kind["RoutingTier"], key=lambda o: meta_of(o).name):
        meta = meta_of(obj)
        try:
            tier, report = _render_tier(meta, parse_spec(obj, RoutingTierSpec), providers)
        except ResourceError as exc:
            reports[(meta.kind, meta.name)] = _failed(meta, "InvalidSpec", exc.problem)
            continue
        reports[(meta.kind, meta.name)] = report
        if tier.candidates:
            tiers[meta.name] = tier
    budgets: list[Budget] = []
    for obj in sorted(by_kind["BudgetPolicy"], key=lambda o: meta_of(o).name):
        meta = meta_of(obj)
        try:
            budgets.append(_render_budget(meta, parse_spec(obj, BudgetPolicySpec)))
        except ResourceError as exc:
            raise RenderError(
                f"{exc} — budgets fail closed: the previous config keeps serving", exc.kind, exc.name
            ) from exc
        target = budgets[-1].downgrade_to
        message = "in the sealed config"
        if target is not None and target not in tiers:
            message = f"tier {target!r} is not available: DOWNGRADE and LIGHT_ONLY act as BLOCK until it is"
        reports[(meta.kind, meta.name)] = ResourceReport(
            kind=meta.kind, name=meta.name, ready=True, reason="Enforcing", message=message
        )
    body = Config(
        schema_version=SCHEMA_VERSION,
        namespace=namespace,
        serial=serial,
        issued_at=format_time(now),
        not_before=format_time(now),
        not_after=format_time(now + VALIDITY),
        signing_key_id=signing_key.kid,
        price_catalog_version=catalog_version(),
        content_hash="",
        providers=tuple(providers[name] for name in sorted(providers)),
        tiers=tuple(tiers[name] for name in sorted(tiers)),
        budgets=tuple(budgets),
    )
    content_hash = _content_hash(body, digests, data_key, signing_key)
    config = replace(body, content_hash=content_hash)
    config_json, config_sig = seal_config(config, signing_key)
    return RenderResult(config, config_json, config_sig, content_hash, reports)


def _content_hash(
    body: Config, digests: Mapping[str, str], data_key: DataKey, signing_key: SigningKey
) -> str:
    """A digest of what the config says, independent of serial, times and nonces.

    Equal hashes mean an unchanged render: the operator then writes nothing.
    """
    stable = replace(
        body,
        serial=0,
        issued_at="",
        not_before="",
        not_after="",
        providers=tuple(
            replace(
                p,
                api_key=None
                if p.api_key is None
                else SealedKey(kid=p.api_key.kid, nonce="", ciphertext=digests[p.name]),
            )
            for p in body.providers
        ),
    )
    material = canonical(stable) + b"\n" + data_key.kid.encode() + b"\n" + signing_key.kid.encode()
    return hashlib.sha256(material).hexdigest()
