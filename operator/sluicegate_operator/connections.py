"""Render ProviderConnections: Secrets resolved and sealed, model prices resolved. Pure.

A connection whose Secret or key is missing is reported and left out; the rest keep working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sluicegate_contract.schema import (
    Azure,
    KeyBinding,
    MockSettings,
    Model,
    ModelPrice,
    Provider,
    Rates,
    SealedKey,
    Timeouts,
)
from sluicegate_contract.sealing import DataKey, key_fingerprint, seal_key
from sluicegate_contract.usable import model_problems

from .crparse import Meta, ModelSpec, ProviderConnectionSpec, ResourceError, meta_of
from .outputlimits import known_output_limit
from .prices import catalog_price, usd_per_mtok_to_micro
from .resourcereport import ResourceReport
from .retirements import retirement_warning


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


def _finite_prices(meta: Meta, index: int, spec: ModelSpec) -> None:
    """A price override that is not a finite number is refused before it is converted."""
    p = spec.pricing
    if p is None:
        return
    for field, value in (
        ("inputPerMTok", p.input_per_m_tok),
        ("outputPerMTok", p.output_per_m_tok),
        ("cachedInputPerMTok", p.cached_input_per_m_tok),
        ("cacheWritePerMTok", p.cache_write_per_m_tok),
    ):
        if value is not None and not math.isfinite(value):
            raise ResourceError(
                meta.kind, meta.name, f"spec.models[{index}].pricing.{field}: not a usable price ({value})"
            )


def _model_price(spec: ModelSpec, kind: str, now: datetime) -> tuple[ModelPrice | None, int | None, bool]:
    """(price, the catalog's context window, whether the catalog marks the model deprecated)."""
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
        entry = catalog_price(kind, spec.name, now)
        return ModelPrice(source="override", base=rates), None, entry is not None and entry.deprecated
    entry = catalog_price(kind, spec.name, now)
    if entry is None:
        return None, None, False
    return entry.price, entry.context_window, entry.deprecated


def render_provider(
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
    warnings: list[str] = []
    for index, m in enumerate(spec.models):
        _finite_prices(meta, index, m)
        price, context, deprecated = _model_price(m, spec.provider, now)
        if price is None:
            unpriced.append(m.name)
        warning = retirement_warning(spec.provider, m.name, now, deprecated)
        if warning is not None:
            warnings.append(warning)
        models.append(
            Model(
                name=m.name,
                alias=m.alias,
                price=price,
                context_window=m.context_window or context,
                max_output_tokens=m.max_output_tokens or known_output_limit(spec.provider, m.name),
            )
        )
    # Values the CRD accepts but a sidecar cannot use (fault 33): this connection is left out.
    problems = model_problems(models)
    if problems:
        raise ResourceError(meta.kind, meta.name, "; ".join(f"{f}: {m}" for f, m in problems))
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
        warnings=tuple(warnings),
    )
    return provider, report, key_digest
