"""Render one namespace's custom resources and Secrets into its sealed config. Pure.

A broken ProviderConnection or RoutingTier degrades only itself (reported, left out); a broken
BudgetPolicy fails the whole render, since leaving a budget out would lift its cap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from msgspec.structs import replace

from sluicegate_contract.schema import (
    SCHEMA_VERSION,
    Budget,
    Config,
    Provider,
    SealedKey,
    Tier,
)
from sluicegate_contract.sealing import (
    DataKey,
    SigningKey,
    canonical,
    seal_config,
)
from sluicegate_contract.timestamps import format_time

from .connections import render_provider
from .crparse import (
    BudgetPolicySpec,
    ProviderConnectionSpec,
    ResourceError,
    RoutingTierSpec,
    meta_of,
    parse_spec,
)
from .policies import render_budget, render_tier
from .prices import catalog_version
from .resourcereport import ResourceReport, failed_report

VALIDITY = timedelta(days=30)


class RenderError(Exception):
    """The namespace cannot be rendered at all; the last good config must keep serving.

    ``kind`` and ``name`` name the resource at fault.
    """

    def __init__(self, message: str, kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


@dataclass(frozen=True, slots=True)
class RenderResult:
    config: Config
    config_json: bytes
    config_sig: bytes
    content_hash: str
    reports: Mapping[tuple[str, str], ResourceReport] = field(default_factory=dict)


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
            provider, report, digest = render_provider(meta, spec, namespace, secrets, data_key, now, offline)
        except ResourceError as exc:
            reports[(meta.kind, meta.name)] = failed_report(meta, _reason_of(exc.problem), exc.problem)
            continue
        providers[meta.name], digests[meta.name] = provider, digest
        reports[(meta.kind, meta.name)] = report
    tiers: dict[str, Tier] = {}
    for obj in sorted(by_kind["RoutingTier"], key=lambda o: meta_of(o).name):
        meta = meta_of(obj)
        try:
            tier, report = render_tier(meta, parse_spec(obj, RoutingTierSpec), providers)
        except ResourceError as exc:
            reports[(meta.kind, meta.name)] = failed_report(meta, "InvalidSpec", exc.problem)
            continue
        reports[(meta.kind, meta.name)] = report
        if tier.candidates:
            tiers[meta.name] = tier
    budgets: list[Budget] = []
    for obj in sorted(by_kind["BudgetPolicy"], key=lambda o: meta_of(o).name):
        meta = meta_of(obj)
        try:
            budgets.append(render_budget(meta, parse_spec(obj, BudgetPolicySpec)))
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
