"""Portkey config JSON → Sluicegate resources. Pure.

Targets become candidates of one RoutingTier (fallback → ordered, loadbalance → weighted; nested
strategies are flattened, conditional branches become tiers of their own). Keys are never copied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from . import (
    COMPATIBLE_BASE_URLS,
    DEFAULT_AZURE_API_VERSION,
    NO_KEY,
    PLACEHOLDER,
    RETRY_CLASSES,
    Candidate,
    ConnectionDraft,
    ImportResult,
    ImportRun,
    KeySource,
    Resource,
    as_mapping,
    assemble,
    dns_name,
    model_problem,
    retry_classes,
    tier_resource,
    unique_name,
)

SOURCE = "Portkey config"
# Portkey provider id → ProviderConnection.spec.provider.
KINDS: Mapping[str, str] = {
    "openai": "openai", "azure-openai": "azure-openai", "anthropic": "anthropic", "google": "gemini",
    "gemini": "gemini", "mistral-ai": "mistral", "groq": "groq", "together-ai": "together",
}  # fmt: skip
# Portkey provider id → the OpenAI-compatible service (COMPATIBLE_BASE_URLS) it names.
COMPATIBLE: Mapping[str, str] = {
    "openrouter": "openrouter", "deepseek": "deepseek", "fireworks-ai": "fireworks",
    "perplexity-ai": "perplexity", "deepinfra": "deepinfra", "x-ai": "xai",
}  # fmt: skip
SELF_HOSTED = frozenset({"ollama", "vllm", "lm-studio", "triton", "openai-compatible", "local-ai"})
_PREFIXES = (
    ("azure", "azure-openai"), ("openai", "openai"), ("anthropic", "anthropic"), ("claude", "anthropic"),
    ("google", "google"), ("gemini", "google"), ("mistral", "mistral-ai"), ("groq", "groq"),
    ("together", "together-ai"), ("openrouter", "openrouter"), ("deepseek", "deepseek"),
    ("fireworks", "fireworks-ai"), ("perplexity", "perplexity-ai"), ("deepinfra", "deepinfra"),
)  # fmt: skip
_NO_GUARDRAILS = "Sluicegate has no guardrails: run checks in the app or a service of their own"
_NOT_CARRIED: Mapping[str, str] = {
    "cache": "Sluicegate has no response cache: every request reaches a provider",
    **dict.fromkeys(("input_guardrails", "output_guardrails"), _NO_GUARDRAILS),
    **dict.fromkeys(("default_input_guardrails", "default_output_guardrails"), _NO_GUARDRAILS),
    **dict.fromkeys(("before_request_hooks", "after_request_hooks"), "Sluicegate has no request hooks"),
    "forward_headers": "the sidecar forwards no app headers to a provider; it sends the connection's key",
    "strict_open_ai_compliance": "Sluicegate always answers in the OpenAI shape",
    "metadata": "config-level metadata is not kept; send x-portkey-metadata or X-Sluicegate-Tags per request",
}
_LEAF_FIELDS = frozenset(
    {"provider", "virtual_key", "api_key", "custom_host", "override_params", "weight", "name"}
    | {"retry", "request_timeout", "strategy", "targets", "on_status_codes"}
    | {"azure_resource_name", "azure_deployment_id", "azure_api_version", "azure_model_name"}
)


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def normalise(node: Any) -> Any:
    """Portkey accepts camelCase and snake_case keys; use snake_case (override_params left as is)."""
    if isinstance(node, list):
        return [normalise(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = _snake(str(key))
        out[name] = (
            dict(value) if name == "override_params" and isinstance(value, Mapping) else normalise(value)
        )
    return out


@dataclass(frozen=True, slots=True)
class _Inherited:
    override_params: Mapping[str, Any] = field(default_factory=dict)
    request_timeout: float | None = None


@dataclass
class _Walk(ImportRun):
    """What one import collects while walking the target tree."""

    default_model: str | None = None
    retry_on: set[str] = field(default_factory=set)


def import_portkey(
    config: Mapping[str, Any],
    *,
    tier: str = "portkey",
    namespace: str | None = None,
    default_model: str | None = None,
) -> ImportResult:
    """Resources equivalent to one Portkey config, and what could not be carried over.

    ``tier`` names the RoutingTier clients ask for (``model: tier:<name>``); ``default_model`` is
    used for targets without ``override_params.model`` (Portkey sent the request's own model).
    """
    root = normalise(config)
    walk = _Walk(default_model=default_model)
    base = dns_name(tier, fallback="portkey", keep_dots=True)
    tiers: list[Resource] = []
    branches = _branches(root, base, walk)
    for rank, (name, strategy, candidates, note) in enumerate(branches, start=1):
        resource = tier_resource(
            name, rank * 10, strategy, candidates, walk.retry_on or set(RETRY_CLASSES),
            namespace, walk.dropped, note,
        )  # fmt: skip
        if resource is None:
            walk.drop(name, f"tier {name}", "none of its targets could be carried over (see above)")
        else:
            tiers.append(resource)
    for draft in walk.book.empty():
        walk.drop(draft.name, f"connection {draft.name}", "no model could be determined for it")
    if tiers:
        names = ", ".join(f"tier:{r.body['metadata']['name']}" for r in tiers)
        walk.todo.append(
            f"Portkey applied the config to every request; in Sluicegate the app picks it by model name: "
            f"ask for {names} (the model in the request is otherwise used as is)."
        )
    return assemble(SOURCE, walk.book, tiers, [], walk.dropped, walk.todo, namespace)


def _branches(root: Mapping[str, Any], base: str, walk: _Walk) -> list[tuple[str, str, list[Candidate], str]]:
    """The tiers to write: one, or one per conditional branch."""
    strategy = as_mapping(root.get("strategy"))
    if strategy.get("mode") != "conditional":
        kind, leaves = _node(root, "config", _Inherited(), walk)
        return [(base, kind, leaves, "")]
    targets = [t for t in root.get("targets", []) if isinstance(t, Mapping)]
    inherited = _inherit(root, _Inherited())
    _retry(root, "config", walk)
    default = strategy.get("default")
    out: list[tuple[str, str, list[Candidate], str]] = []
    names: dict[str, str] = {}
    for i, target in enumerate(targets):
        label = str(target.get("name") or f"target-{i}")
        name = base if label == default else unique_name(
            dns_name(f"{base}-{label}", fallback=f"{base}-{i}", keep_dots=True), [n for n, *_ in out]
        )  # fmt: skip
        names[label] = name
        kind, leaves = _node(target, f"targets[{i}]", inherited, walk)
        out.append((name, kind, leaves, f"Portkey conditional branch '{label}'"))
    for i, condition in enumerate(strategy.get("conditions", []) or []):
        then = condition.get("then") if isinstance(condition, Mapping) else None
        query = condition.get("query") if isinstance(condition, Mapping) else None
        model = _model_condition(query)
        tier_name = names.get(str(then))
        if model is not None and tier_name is not None:
            walk.todo.append(
                f"Requests that Portkey routed by model '{model}' to '{then}': "
                f"ask for model 'tier:{tier_name}'."
            )
        else:
            walk.drop(
                f"strategy.conditions[{i}]",
                "conditional routing on request metadata or parameters",
                "Sluicegate routes by the model name only; each branch is a tier the app picks "
                f"with model 'tier:<name>'{f' (this one: tier:{tier_name})' if tier_name else ''}",
            )
    _unknown_keys(strategy, {"mode", "conditions", "default", "on_status_codes"}, "strategy", walk)
    _unknown_keys(
        root,
        {"strategy", "targets", "retry", "override_params", "request_timeout"} | set(_NOT_CARRIED),
        "config",
        walk,
    )
    _not_carried(root, "config", walk)
    return out


def _model_condition(query: Any) -> str | None:
    """X when a condition is exactly ``{"params.model": {"$eq": X}}`` (or ``{"params.model": X}``)."""
    if not isinstance(query, Mapping) or list(query) != ["params.model"]:
        return None
    value = query["params.model"]
    if isinstance(value, Mapping) and list(value) == ["$eq"]:
        value = value["$eq"]
    return value if isinstance(value, str) else None


def _inherit(node: Mapping[str, Any], inherited: _Inherited) -> _Inherited:
    """Targets inherit their parents' override_params (theirs win) and request_timeout."""
    params = dict(inherited.override_params)
    if isinstance(node.get("override_params"), Mapping):
        params.update(node["override_params"])
    timeout = node.get("request_timeout", inherited.request_timeout)
    return _Inherited(params, timeout if isinstance(timeout, int | float) else None)


def _node(
    node: Mapping[str, Any], where: str, inherited: _Inherited, walk: _Walk
) -> tuple[str, list[Candidate]]:
    """A node's candidates in try order (``ordered``) or with traffic shares (``weighted``)."""
    here = _inherit(node, inherited)
    _retry(node, where, walk)
    targets = node.get("targets")
    if not isinstance(targets, list) or not targets:
        leaf = _leaf(node, where, here, walk)
        return "ordered", [] if leaf is None else [leaf]
    _not_carried(node, where, walk)
    _unknown_keys(node, _LEAF_FIELDS | set(_NOT_CARRIED), where, walk)
    strategy = as_mapping(node.get("strategy"))
    mode = strategy.get("mode", "single")
    children = [(i, t) for i, t in enumerate(targets) if isinstance(t, Mapping)]
    if not children:
        walk.drop(f"{where}.targets", "targets that are not objects", "nothing to route to")
        return "ordered", []
    if mode == "conditional":
        default = strategy.get("default")
        chosen = next((c for c in children if c[1].get("name") == default), children[0])
        walk.drop(
            f"{where}.strategy", "nested conditional routing",
            f"only a top-level conditional becomes several tiers; here only target '{chosen[1].get('name')}' "
            "was kept",
        )  # fmt: skip
        children = [chosen]
    if mode == "loadbalance":
        return "weighted", _loadbalance(children, where, here, walk)
    if mode == "fallback":
        codes = strategy.get("on_status_codes", node.get("on_status_codes"))
        _fallback_codes(codes, f"{where}.strategy.on_status_codes", walk)
    elif mode == "single" and len(children) > 1:
        walk.drop(
            f"{where}.targets", "targets after the first", "mode 'single' used only the first; left out"
        )
        children = children[:1]
    elif mode not in ("single", "conditional"):
        walk.drop(f"{where}.strategy.mode", f"mode '{mode}'", "unknown Portkey strategy; read as fallback")
    out: list[Candidate] = []
    for i, child in children:
        kind, leaves = _node(child, f"{where}.targets[{i}]", here, walk)
        if kind == "weighted" and len(leaves) > 1:
            walk.drop(
                f"{where}.targets[{i}]", "load balancing nested inside a fallback",
                "Sluicegate tiers are flat: these targets are tried in the order of their weights",
            )  # fmt: skip
            leaves = sorted(leaves, key=lambda c: c.weight, reverse=True)
        out.extend(leaves)
    primary = [
        Candidate(c.connection, c.model, Fraction(1 if j == 0 else 0), c.where) for j, c in enumerate(out)
    ]
    return "ordered", primary


def _loadbalance(
    children: list[tuple[int, Mapping[str, Any]]], where: str, inherited: _Inherited, walk: _Walk
) -> list[Candidate]:
    weights: list[Fraction] = []
    for i, child in children:
        raw = child.get("weight", 1)
        if not isinstance(raw, int | float) or isinstance(raw, bool) or raw < 0:
            walk.drop(f"{where}.targets[{i}].weight", "a weight that is not a number >= 0", "read as 1")
            raw = 1
        weights.append(Fraction(str(raw)))
    total = sum(weights) or Fraction(1)
    out: list[Candidate] = []
    for (i, child), weight in zip(children, weights, strict=True):
        if weight == 0:
            walk.drop(f"{where}.targets[{i}]", "a target with weight 0", "it received no traffic; left out")
            continue
        kind, leaves = _node(child, f"{where}.targets[{i}]", inherited, walk)
        if kind == "ordered" and len(leaves) > 1:
            walk.drop(
                f"{where}.targets[{i}]", "a fallback chain nested inside load balancing",
                "Sluicegate tiers are flat: its first target takes the share, the others serve only "
                "when a pick fails (weight 1)",
            )  # fmt: skip
        inner = sum(c.weight for c in leaves) or Fraction(1)
        share = weight / total
        out.extend(Candidate(c.connection, c.model, share * c.weight / inner, c.where) for c in leaves)
    return out


def _retry(node: Mapping[str, Any], where: str, walk: _Walk) -> None:
    retry = node.get("retry")
    if not isinstance(retry, Mapping):
        return
    attempts = retry.get("attempts")
    if isinstance(attempts, int) and attempts > 0:
        walk.drop(
            f"{where}.retry.attempts", f"{attempts} retries of the same target",
            "Sluicegate never retries the same candidate: it moves to the next one (fallback.maxRetries) "
            "and honours Retry-After as a cool-down; add a second connection for the same model to retry "
            "on another account",
        )  # fmt: skip
    _fallback_codes(retry.get("on_status_codes"), f"{where}.retry.on_status_codes", walk)


def _fallback_codes(codes: Any, where: str, walk: _Walk) -> None:
    if not isinstance(codes, list):
        walk.retry_on.update(RETRY_CLASSES)
        return
    classes, ignored = retry_classes(codes)
    walk.retry_on.update(classes | {"timeout", "connect"})
    partial = sorted(c for c in codes if isinstance(c, int) and 500 <= c <= 599)
    if partial:
        walk.drop(where, f"only status {', '.join(map(str, partial))}", "Sluicegate retries on any 5xx")
    if ignored:
        walk.drop(
            where, f"status {', '.join(map(str, ignored))}",
            "Sluicegate never falls back on a 4xx the request caused (it would fail everywhere); a "
            "401/403 benches that connection's key and moves on",
        )  # fmt: skip


def _not_carried(node: Mapping[str, Any], where: str, walk: _Walk) -> None:
    for key, why in _NOT_CARRIED.items():
        if key in node:
            walk.drop(f"{where}.{key}", key, why)


def _unknown_keys(node: Mapping[str, Any], known: set[str] | frozenset[str], where: str, walk: _Walk) -> None:
    for key in node:
        if key not in known:
            walk.drop(f"{where}.{key}", key, "not a Portkey config field Sluicegate knows; not carried over")


def _leaf(node: Mapping[str, Any], where: str, inherited: _Inherited, walk: _Walk) -> Candidate | None:
    _not_carried(node, where, walk)
    _unknown_keys(node, _LEAF_FIELDS | set(_NOT_CARRIED), where, walk)
    params = dict(inherited.override_params)
    model = params.pop("model", None)
    if params:
        walk.drop(
            f"{where}.override_params", ", ".join(sorted(params)),
            "Sluicegate forwards the request's parameters unchanged; set them in the app",
        )  # fmt: skip
    provider = node.get("provider")
    slug = None
    if isinstance(provider, str) and provider.startswith("@"):
        slug = provider[1:]
    if isinstance(model, str) and model.startswith("@") and "/" in model:
        slug, model = model[1:].split("/", 1)
    model = model or node.get("azure_model_name") or node.get("azure_deployment_id") or walk.default_model
    if not isinstance(model, str) or not model:
        walk.drop(
            where, "a target without override_params.model",
            "Portkey sent each request's own model; name the models (sluicegate import --model, or "
            "spec.models and the tier's candidates)",
        )  # fmt: skip
        return None
    draft = _connection(node, where, provider, slug, walk)
    if draft is None:
        return None
    deployment = node.get("azure_deployment_id") if draft.kind == "azure-openai" else None
    problem = model_problem(model)
    if problem is not None:
        walk.drop(where, f"model '{model}'", problem)
        return None
    draft.add_model(model, deployment if isinstance(deployment, str) else None)
    if inherited.request_timeout:
        draft.raise_timeout(inherited.request_timeout / 1000)
    return Candidate(draft.name, model, Fraction(1), where)


def _connection(
    node: Mapping[str, Any], where: str, provider: Any, slug: str | None, walk: _Walk
) -> ConnectionDraft | None:
    virtual_key = node.get("virtual_key")
    host = node.get("custom_host")
    name = provider if isinstance(provider, str) and not provider.startswith("@") else None
    if name is None:
        name = _guess_provider(slug or (virtual_key if isinstance(virtual_key, str) else ""))
    if name is None:
        label = f"@{slug}" if slug else f"virtual key '{virtual_key}'" if virtual_key else "this target"
        walk.drop(where, label, 'cannot tell which provider it is for; add "provider" to the target')
        return None
    kind = KINDS.get(name)
    base_url = host if isinstance(host, str) and host.startswith(("http://", "https://")) else None
    if kind is None and name in COMPATIBLE:
        kind, base_url = "openai-compatible", base_url or COMPATIBLE_BASE_URLS[COMPATIBLE[name]]
    elif kind is None and base_url:
        kind = "openai-compatible"
        walk.todo.append(f"{where}: provider '{name}' was read as OpenAI-compatible at {base_url}; check it.")
    elif kind is None:
        walk.drop(where, f"provider '{name}'", "Sluicegate has no adapter for it")
        return None
    elif kind == "openai" and base_url:
        kind = "openai-compatible"
    api_version = None
    if kind == "azure-openai":
        resource = node.get("azure_resource_name")
        base_url = base_url or (f"https://{resource}.openai.azure.com" if isinstance(resource, str) else None)
        if base_url is None:
            base_url = f"https://{PLACEHOLDER}.openai.azure.com"
            walk.todo.append(f"{where}: set the Azure resource URL in spec.baseURL (no azure_resource_name).")
        api_version = node.get("azure_api_version")
        if not isinstance(api_version, str):
            api_version = DEFAULT_AZURE_API_VERSION
            walk.todo.append(f"{where}: no azure_api_version; {DEFAULT_AZURE_API_VERSION} assumed.")
    key, identity = _key(node, name, slug, virtual_key)
    if identity[0] == "app" and (
        name in SELF_HOSTED or (kind == "openai-compatible" and name not in COMPATIBLE)
    ):
        key = NO_KEY
    hint = slug or (virtual_key if isinstance(virtual_key, str) else name)
    return walk.book.draft(
        (kind, base_url, api_version, identity),
        hint=hint, kind=kind, base_url=base_url, key=key, azure_api_version=api_version,
    )  # fmt: skip


def _key(node: Mapping[str, Any], provider: str, slug: str | None, virtual_key: Any) -> tuple[KeySource, Any]:
    """Where the key lived (in words) and what identifies it; the key value stays in memory only."""
    if isinstance(virtual_key, str):
        return KeySource(f"Portkey virtual key '{virtual_key}'"), ("vk", virtual_key)
    if slug:
        return KeySource(f"Portkey Model Catalog provider '@{slug}'"), ("slug", slug)
    api_key = node.get("api_key")
    if isinstance(api_key, str) and api_key:
        return KeySource(f"an api_key written in the Portkey config for {provider} (not copied)"), (
            "inline",
            api_key,
        )
    return KeySource(f"the {provider} key your app sent with each request"), ("app", provider)


def _guess_provider(text: str) -> str | None:
    """A provider id from a virtual key or catalog slug such as ``openai-prod`` or ``azure-eu``."""
    lowered = text.lower()
    return next((name for prefix, name in _PREFIXES if lowered.startswith(prefix)), None)
