"""LiteLLM model_list entries (deployments) → candidates on ProviderConnection drafts. Pure.

Reads the provider prefix, api_base, api_version, key reference and prices of one deployment; never
copies a key value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
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
    as_mapping,
    model_problem,
)

ENV_PREFIX = "os.environ/"
# LiteLLM provider prefix → (ProviderConnection.spec.provider, the env var LiteLLM reads by default).
KINDS: Mapping[str, tuple[str, str]] = {
    "openai": ("openai", "OPENAI_API_KEY"), "azure": ("azure-openai", "AZURE_API_KEY"),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY"), "gemini": ("gemini", "GEMINI_API_KEY"),
    "mistral": ("mistral", "MISTRAL_API_KEY"), "groq": ("groq", "GROQ_API_KEY"),
    "together_ai": ("together", "TOGETHERAI_API_KEY"),
}  # fmt: skip
# LiteLLM provider prefix → (the OpenAI-compatible service it names, its default key variable).
COMPATIBLE: Mapping[str, tuple[str, str]] = {
    "openrouter": ("openrouter", "OPENROUTER_API_KEY"), "deepseek": ("deepseek", "DEEPSEEK_API_KEY"),
    "fireworks_ai": ("fireworks", "FIREWORKS_AI_API_KEY"), "deepinfra": ("deepinfra", "DEEPINFRA_API_KEY"),
    "perplexity": ("perplexity", "PERPLEXITYAI_API_KEY"), "xai": ("xai", "XAI_API_KEY"),
}  # fmt: skip
SELF_HOSTED = frozenset(
    {"hosted_vllm", "vllm", "ollama", "ollama_chat", "lm_studio", "openai_like", "custom_openai"}
)
# How LiteLLM guesses the provider of a model written without a prefix.
_BARE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"), ("chatgpt", "openai"),
    ("text-embedding", "openai"), ("claude", "anthropic"), ("gemini", "gemini"), ("mistral", "mistral"),
)  # fmt: skip
_PARAMS_USED = frozenset(
    {"model", "api_key", "api_base", "base_url", "api_version", "rpm", "tpm", "weight", "timeout"}
    | {"input_cost_per_token", "output_cost_per_token"}
)
_INFO_USED = frozenset(
    {"id", "base_model", "input_cost_per_token", "output_cost_per_token", "max_output_tokens", "mode"}
)


def read_deployment(entry: Mapping[str, Any], where: str, run: ImportRun) -> Candidate | None:
    """One model_list entry as a candidate, its model added to its connection; None when dropped."""
    params = as_mapping(entry.get("litellm_params"))
    info = as_mapping(entry.get("model_info"))
    target = params.get("model")
    if not isinstance(target, str) or not target:
        run.drop(where, "a deployment without litellm_params.model", "nothing to route to")
        return None
    prefix, slash, model = target.partition("/")
    if not slash:
        prefix = next((p for start, p in _BARE_PREFIXES if target.startswith(start)), "")
        model = target
    draft = _connection(prefix, params, where, run)
    if draft is None:
        return None
    deployment = None
    if draft.kind == "azure-openai":
        deployment = model
        base = info.get("base_model")
        model = base.removeprefix("azure/") if isinstance(base, str) and base else model
    problem = model_problem(model, draft.kind)
    if problem is not None:
        run.drop(where, f"model '{target}'", problem)
        return None
    draft.add_model(
        model, deployment, pricing=_pricing(params, info, where, run), maxOutputTokens=_max_out(info)
    )
    timeout = params.get("timeout")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        draft.raise_timeout(float(timeout))
    unused = sorted(set(params) - _PARAMS_USED)
    if unused:
        run.drop(
            f"{where}.litellm_params", ", ".join(unused),
            "per-deployment request settings are not kept; Sluicegate forwards the request's own parameters",
        )  # fmt: skip
    for key in ("rpm", "tpm"):
        if key in params:
            run.drop(
                f"{where}.litellm_params.{key}", f"{key} limit",
                "Sluicegate does not rate-limit; the value only sets this deployment's weight",
            )  # fmt: skip
    ignored_info = sorted(set(info) - _INFO_USED)
    if ignored_info:
        run.drop(f"{where}.model_info", ", ".join(ignored_info), "model metadata Sluicegate does not use")
    return Candidate(draft.name, model, _weight(params), where)


def _connection(prefix: str, params: Mapping[str, Any], where: str, run: ImportRun) -> ConnectionDraft | None:
    api_base = params.get("api_base", params.get("base_url"))
    base_url, base_env = _value(api_base)
    base_url = base_url.rstrip("/") if base_url else None
    if prefix in KINDS:
        kind, default_env = KINDS[prefix]
    elif prefix in COMPATIBLE:
        kind, default_env = "openai-compatible", COMPATIBLE[prefix][1]
        base_url = base_url or COMPATIBLE_BASE_URLS[COMPATIBLE[prefix][0]]
    elif prefix in SELF_HOSTED and (base_url or base_env):
        kind, default_env = "openai-compatible", ""
    else:
        what = f"provider '{prefix}'" if prefix else "a model whose provider LiteLLM infers"
        run.drop(where, what, "Sluicegate has no adapter for it (or needs api_base for a self-hosted server)")
        return None
    if kind == "openai" and (base_url or base_env) and "api.openai.com" not in (base_url or ""):
        kind = "openai-compatible"  # LiteLLM's openai/<model> + api_base is its OpenAI-compatible form
    if base_env:
        run.todo.append(f"{where}: LiteLLM read api_base from ${base_env}; put its value in spec.baseURL.")
        base_url = (
            f"https://{PLACEHOLDER}.openai.azure.com"
            if kind == "azure-openai"
            else f"https://{PLACEHOLDER}.invalid/v1"
        )
    if kind == "azure-openai" and not base_url:
        base_url = f"https://{PLACEHOLDER}.openai.azure.com"
        run.todo.append(f"{where}: no api_base for Azure; put the resource URL in spec.baseURL.")
    api_version = None
    if kind == "azure-openai":
        version, version_env = _value(params.get("api_version"))
        api_version = version or DEFAULT_AZURE_API_VERSION
        if version is None:
            source = f"${version_env}" if version_env else "the AZURE_API_VERSION default"
            run.todo.append(f"{where}: api_version came from {source}; {api_version} written, check it.")
    key, identity, hint = _key(params.get("api_key"), default_env, prefix or kind, where)
    draft = run.book.draft(
        (kind, base_url, api_version, identity),
        hint=hint, kind=kind, base_url=base_url, key=key, azure_api_version=api_version,
    )  # fmt: skip
    return draft


def _value(raw: Any) -> tuple[str | None, str | None]:
    """A literal string, or the name of the env var an ``os.environ/NAME`` reference reads."""
    if isinstance(raw, str) and raw.startswith(ENV_PREFIX):
        return None, raw[len(ENV_PREFIX) :]
    return (raw, None) if isinstance(raw, str) and raw else (None, None)


def _key(raw: Any, default_env: str, label: str, where: str) -> tuple[KeySource, Any, str]:
    """The key's source in words, what identifies it, and a connection name hint; never the key."""
    value, env = _value(raw)
    if env:
        hint = re.sub(r"_?API_?KEY_?", "-", env, flags=re.IGNORECASE)
        return KeySource(f"the environment variable {env}", env), ("env", env), hint or label
    if value:
        source = KeySource(f"an api_key written in the LiteLLM config at {where} (not copied)")
        return source, ("inline", value), label
    if not default_env:
        return NO_KEY, ("none", label), label
    return (
        KeySource(f"the environment variable {default_env} (LiteLLM's default)", default_env),
        ("env", default_env),
        label,
    )


def _pricing(
    params: Mapping[str, Any], info: Mapping[str, Any], where: str, run: ImportRun
) -> dict[str, Any] | None:
    """Per-token USD costs → USD per million tokens (a ProviderConnection price override)."""
    out: dict[str, Any] = {}
    for source, name in (
        ("input_cost_per_token", "inputPerMTok"),
        ("output_cost_per_token", "outputPerMTok"),
    ):
        raw = params.get(source, info.get(source))
        if raw is None:
            continue
        try:
            per_mtok = Decimal(str(raw)) * 1_000_000
        except InvalidOperation:
            run.drop(f"{where}.{source}", source, "not a number")
            continue
        out[name] = int(per_mtok) if per_mtok == per_mtok.to_integral_value() else float(per_mtok)
    if len(out) == 1:
        run.drop(where, "a price with only one of input and output cost", "a price override needs both")
        return None
    return out or None


def _max_out(info: Mapping[str, Any]) -> int | None:
    value = info.get("max_output_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _weight(params: Mapping[str, Any]) -> Fraction:
    """LiteLLM's simple-shuffle picks by weight, else rpm, else tpm."""
    for key in ("weight", "rpm", "tpm"):
        value = params.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return Fraction(str(value))
    return Fraction(1)
