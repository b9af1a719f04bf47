"""Portkey targets (the leaves of a config's strategy tree) → candidates on ProviderConnection drafts.

Also what a walk of the tree carries and the checks of a node's keys. Pure; keys are never copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .drafts import (
    COMPATIBLE_BASE_URLS,
    DEFAULT_AZURE_API_VERSION,
    NO_KEY,
    PLACEHOLDER,
    Candidate,
    ConnectionDraft,
    ImportRun,
    KeySource,
    model_problem,
)

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
NOT_CARRIED: Mapping[str, str] = {
    "cache": "Sluicegate has no response cache: every request reaches a provider",
    **dict.fromkeys(("input_guardrails", "output_guardrails"), _NO_GUARDRAILS),
    **dict.fromkeys(("default_input_guardrails", "default_output_guardrails"), _NO_GUARDRAILS),
    **dict.fromkeys(("before_request_hooks", "after_request_hooks"), "Sluicegate has no request hooks"),
    "forward_headers": "the sidecar forwards no app headers to a provider; it sends the connection's key",
    "strict_open_ai_compliance": "Sluicegate always answers in the OpenAI shape",
    "metadata": "config-level metadata is not kept; send x-portkey-metadata or X-Sluicegate-Tags per request",
}
LEAF_FIELDS = frozenset(
    {"provider", "virtual_key", "api_key", "custom_host", "override_params", "weight", "name"}
    | {"retry", "request_timeout", "strategy", "targets", "on_status_codes"}
    | {"azure_resource_name", "azure_deployment_id", "azure_api_version", "azure_model_name"}
)


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a target takes from its parents: their override_params and request_timeout (ms)."""

    override_params: Mapping[str, Any] = field(default_factory=dict)
    request_timeout: float | None = None


@dataclass
class Walk(ImportRun):
    """What one import collects while walking the target tree."""

    default_model: str | None = None
    retry_on: set[str] = field(default_factory=set)


def not_carried(node: Mapping[str, Any], where: str, walk: Walk) -> None:
    for key, why in NOT_CARRIED.items():
        if key in node:
            walk.drop(f"{where}.{key}", key, why)


def unknown_keys(node: Mapping[str, Any], known: set[str] | frozenset[str], where: str, walk: Walk) -> None:
    for key in node:
        if key not in known:
            walk.drop(f"{where}.{key}", key, "not a Portkey config field Sluicegate knows; not carried over")


def read_target(node: Mapping[str, Any], where: str, inherited: Inherited, walk: Walk) -> Candidate | None:
    """A leaf target as a candidate, its model added to its connection; None when dropped."""
    not_carried(node, where, walk)
    unknown_keys(node, LEAF_FIELDS | set(NOT_CARRIED), where, walk)
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
    problem = model_problem(model, draft.kind)
    if problem is not None:
        walk.drop(where, f"model '{model}'", problem)
        return None
    draft.add_model(model, deployment if isinstance(deployment, str) else None)
    if inherited.request_timeout:
        draft.raise_timeout(inherited.request_timeout / 1000)
    return Candidate(draft.name, model, Fraction(1), where)


def _connection(
    node: Mapping[str, Any], where: str, provider: Any, slug: str | None, walk: Walk
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
