"""Translate other gateways' configs into Sluicegate resources. Pure.

A parsed config goes in; Secret stubs, ProviderConnections, RoutingTiers, BudgetPolicies and the
list of what could not be carried over come out. A key value is never copied into the output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import lcm
from typing import Any

from ..crparse import GROUP_VERSION

PLACEHOLDER = "REPLACE-ME"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# The CRD's pattern for spec.models[].name: provider ids may hold '/' (meta-llama/Llama-3.3-70B-Instruct).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*(/[A-Za-z0-9][A-Za-z0-9._:-]*)*$")
URL_MODEL_KINDS = frozenset({"gemini", "azure-openai"})  # their model names go into the upstream URL
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RETRY_CLASSES = ("429", "5xx", "timeout", "connect")
MAX_RETRIES = 5
MAX_WEIGHT = 1000
MAX_TOTAL_SECONDS = 86400.0
# OpenAI-compatible services with a well-known public endpoint (ProviderConnection openai-compatible).
COMPATIBLE_BASE_URLS: Mapping[str, str] = {
    "openrouter": "https://openrouter.ai/api/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "perplexity": "https://api.perplexity.ai",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "xai": "https://api.x.ai/v1",
}


@dataclass(frozen=True, slots=True)
class Dropped:
    """Something in the source config that has no Sluicegate equivalent, and why."""

    where: str
    what: str
    why: str


@dataclass(frozen=True, slots=True)
class Resource:
    body: Mapping[str, Any]
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ImportResult:
    source: str
    resources: tuple[Resource, ...]
    dropped: tuple[Dropped, ...]
    todo: tuple[str, ...]

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [dict(r.body) for r in self.resources]


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where the provider key lived in the source config, in words; never the key itself."""

    description: str
    env: str | None = None


NO_KEY = KeySource("no key: a self-hosted server may need none (any non-empty value will do)")


@dataclass(frozen=True, slots=True)
class Candidate:
    connection: str
    model: str
    weight: Fraction = Fraction(1)
    where: str = ""


@dataclass
class ConnectionDraft:
    """A ProviderConnection being assembled during one import (never shared between imports)."""

    name: str
    kind: str
    base_url: str | None
    key: KeySource
    azure_api_version: str | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, str] = field(default_factory=dict)
    total_seconds: float | None = None

    def add_model(self, name: str, deployment: str | None = None, **extra: Any) -> None:
        entry = self.models.setdefault(name, {"name": name})
        entry.update({k: v for k, v in extra.items() if v is not None and k not in entry})
        if deployment and deployment != name:
            self.deployments.setdefault(name, deployment)

    def raise_timeout(self, seconds: float) -> None:
        if 0 < seconds <= MAX_TOTAL_SECONDS:
            self.total_seconds = max(self.total_seconds or 0.0, seconds)


class ConnectionBook:
    """The connections found so far, keyed by what makes them distinct; names unique and DNS-safe."""

    def __init__(self) -> None:
        self._drafts: dict[tuple[Any, ...], ConnectionDraft] = {}

    def draft(
        self,
        identity: tuple[Any, ...],
        *,
        hint: str,
        kind: str,
        base_url: str | None,
        key: KeySource,
        azure_api_version: str | None = None,
    ) -> ConnectionDraft:
        found = self._drafts.get(identity)
        if found is None:
            name = unique_name(dns_name(hint, fallback=kind), {d.name for d in self._drafts.values()})
            found = ConnectionDraft(name, kind, base_url, key, azure_api_version)
            self._drafts[identity] = found
        return found

    def drafts(self) -> list[ConnectionDraft]:
        return [d for d in self._drafts.values() if d.models]

    def empty(self) -> list[ConnectionDraft]:
        return [d for d in self._drafts.values() if not d.models]


@dataclass
class ImportRun:
    """What one import collects as it goes (never shared between imports)."""

    book: ConnectionBook = field(default_factory=ConnectionBook)
    dropped: list[Dropped] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)

    def drop(self, where: str, what: str, why: str) -> None:
        self.dropped.append(Dropped(where, what, why))


def dns_name(text: str, *, fallback: str, keep_dots: bool = False) -> str:
    """``text`` as a lowercase RFC 1123 name (at most 63 characters), or ``fallback``."""
    allowed = "a-z0-9.-" if keep_dots else "a-z0-9-"
    name = re.sub(f"[^{allowed}]+", "-", text.lower())
    name = re.sub(r"-*\.-*", ".", re.sub(r"\.{2,}", ".", name)) if keep_dots else name
    name = re.sub(r"-{2,}", "-", name).strip("-.")[:63].strip("-.")
    return name if name and _DNS_NAME.match(name) else fallback


def unique_name(name: str, taken: Iterable[str]) -> str:
    used = set(taken)
    if name not in used:
        return name
    n = 2
    while f"{name[:60]}-{n}" in used:
        n += 1
    return f"{name[:60]}-{n}"


def integer_weights(shares: Sequence[Fraction]) -> list[int]:
    """Proportional integer weights in [1, 1000]; exact when the ratios allow it.

    A zero share (a backup that only gets traffic when others fail) becomes the minimum weight 1
    beside shares scaled well above it.
    """
    positive = [s for s in shares if s > 0]
    if not positive:
        return [1 for _ in shares]
    scale = lcm(*(s.denominator for s in positive))
    ints = [s * scale for s in positive]
    divisor = 0
    for value in ints:
        divisor = _gcd(divisor, int(value))
    exact = [int(v) // divisor for v in ints]
    top = max(exact)
    has_zero = len(positive) < len(shares)
    if top > MAX_WEIGHT or (has_zero and top < 10):
        target = MAX_WEIGHT if top > MAX_WEIGHT else min(MAX_WEIGHT, top * 100)
        exact = [max(1, round(v * target / top)) for v in exact]
    scaled = iter(exact)
    return [next(scaled) if s > 0 else 1 for s in shares]


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def retry_classes(codes: Iterable[Any]) -> tuple[set[str], list[int]]:
    """HTTP status codes → Sluicegate retry classes, and the codes that have none."""
    classes: set[str] = set()
    ignored: list[int] = []
    for code in codes:
        if not isinstance(code, int) or isinstance(code, bool):
            continue
        if code == 429:
            classes.add("429")
        elif 500 <= code <= 599:
            classes.add("5xx")
        elif code == 408:
            classes.add("timeout")
        else:
            ignored.append(code)
    return classes, sorted(set(ignored))


def metadata(name: str, namespace: str | None) -> dict[str, Any]:
    return {"name": name, **({"namespace": namespace} if namespace else {})}


def secret_name(draft: ConnectionDraft) -> str:
    return f"{draft.name[:59]}-key"


def secret_stub(draft: ConnectionDraft, namespace: str | None) -> Resource:
    name = secret_name(draft)
    where = f"Put the key that was in {draft.key.description} into stringData.apiKey"
    if draft.key.env:
        how = f'kubectl create secret generic {name} --from-literal=apiKey="${draft.key.env}"'
    else:
        how = f"kubectl create secret generic {name} --from-literal=apiKey=<the key>"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, namespace),
        "type": "Opaque",
        "stringData": {"apiKey": PLACEHOLDER},
    }
    return Resource(body, f"{where}, or replace this stub with:\n  {how}")


def connection_resource(draft: ConnectionDraft, namespace: str | None, comment: str = "") -> Resource:
    spec: dict[str, Any] = {"provider": draft.kind}
    if draft.base_url:
        spec["baseURL"] = draft.base_url
    spec["apiKeySecretRef"] = {"name": secret_name(draft), "key": "apiKey"}
    if draft.kind == "azure-openai":
        azure: dict[str, Any] = {"apiVersion": draft.azure_api_version or DEFAULT_AZURE_API_VERSION}
        if draft.deployments:
            azure["deployments"] = dict(draft.deployments)
        spec["azure"] = azure
    spec["models"] = [dict(m) for m in draft.models.values()]
    if draft.total_seconds:
        spec["timeouts"] = {"totalSeconds": draft.total_seconds}
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "ProviderConnection",
        "metadata": metadata(draft.name, namespace),
        "spec": spec,
    }
    return Resource(body, comment)


def tier_resource(
    name: str,
    rank: int,
    strategy: str,
    candidates: Sequence[Candidate],
    retry_on: Iterable[str],
    namespace: str | None,
    dropped: list[Dropped],
    comment: str = "",
) -> Resource | None:
    """A RoutingTier (None without candidates); duplicate candidates are dropped with a reason.

    ``maxRetries`` lets every candidate be tried once (at most 5); ``auto`` is off, so model
    ``auto`` only picks tiers you opt in.
    """
    kept: list[Candidate] = []
    for c in candidates:
        if any((k.connection, k.model) == (c.connection, c.model) for k in kept):
            dropped.append(
                Dropped(
                    c.where or f"tier {name}",
                    f"second {c.connection}/{c.model} in tier {name}",
                    "a tier lists each connection and model once; the first occurrence keeps its place",
                )
            )
            continue
        kept.append(c)
    if not kept:
        return None
    if len(kept) > MAX_RETRIES + 1:
        dropped.append(
            Dropped(
                f"tier {name}",
                f"fallback beyond the {MAX_RETRIES + 1}th candidate",
                f"Sluicegate tries at most {MAX_RETRIES} fallbacks per request; the other candidates "
                "still serve when earlier ones are skipped (open circuit, cooling down)",
            )
        )
    entries: list[dict[str, Any]] = [{"connection": c.connection, "model": c.model} for c in kept]
    if strategy == "weighted" and len(kept) > 1:
        for entry, weight in zip(entries, integer_weights([c.weight for c in kept]), strict=True):
            entry["weight"] = weight
    wanted = set(retry_on)
    spec: dict[str, Any] = {
        "rank": rank,
        "strategy": strategy if len(kept) > 1 else "ordered",
        "candidates": entries,
        "fallback": {
            "maxRetries": min(MAX_RETRIES, len(kept) - 1),
            "retryOn": [c for c in RETRY_CLASSES if c in wanted],
        },
        "auto": {"enabled": False},
    }
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "RoutingTier",
        "metadata": metadata(name, namespace),
        "spec": spec,
    }
    return Resource(body, comment)


def budget_resource(
    name: str, window: str, amount_usd: float, namespace: str | None, comment: str = "", **spec: Any
) -> Resource:
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "BudgetPolicy",
        "metadata": metadata(name, namespace),
        "spec": {"limits": [{"window": window, "amountUSD": amount_usd, "timezone": "UTC"}], **spec},
    }
    return Resource(body, comment)


def assemble(
    source: str,
    book: ConnectionBook,
    tiers: Sequence[Resource],
    budgets: Sequence[Resource],
    dropped: Sequence[Dropped],
    todo: Sequence[str],
    namespace: str | None,
) -> ImportResult:
    """Order the output as ``kubectl apply`` wants it: Secrets, connections, tiers, budgets."""
    drafts = book.drafts()
    resources = [secret_stub(d, namespace) for d in drafts]
    resources += [connection_resource(d, namespace) for d in drafts]
    resources += [*tiers, *budgets]
    steps = list(todo)
    if drafts:
        steps.insert(
            0,
            f"Fill the {len(drafts)} Secret stub(s) below with the real provider keys, or create the "
            "Secrets with the kubectl line in each stub's comment and delete the stubs: applying a stub "
            "over an existing Secret replaces its key with the placeholder.",
        )
    return ImportResult(source, tuple(resources), tuple(dropped), tuple(dict.fromkeys(steps)))


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def model_problem(name: str, kind: str | None = None) -> str | None:
    """Why ``name`` cannot be a model name of a ``kind`` ProviderConnection, or None."""
    if "/" in name and kind in URL_MODEL_KINDS:
        return f"a {kind} model name may not contain '/' (it is part of the upstream URL)"
    if len(name) <= 128 and MODEL_NAME.match(name):
        return None
    return (
        "a model name is 1-128 of letters, digits and . _ : - (parts starting with a letter or "
        "digit, separated by '/')"
    )
