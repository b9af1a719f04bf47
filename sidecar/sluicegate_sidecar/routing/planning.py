"""What one request will try: the model resolved to candidates, narrowed by endpoint, provider pin and
context window, or moved to a lighter tier by a budget verdict. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

from ..errors import ApiError, budget_exceeded
from ..providers.base import Operation
from ..tokens import estimate_prompt_tokens
from .autotier import features_of
from .bounds import RequestBound, request_bound
from .catalog import ModelCatalog, Target
from .resolve import InvalidModel, Resolution, UnknownModel, resolve


class Plan(msgspec.Struct, frozen=True, gc=False):
    """The resolution, its candidates, the prompt-size estimate (``auto``, candidate order, context
    checks) and the request's upper bound (its reservations)."""

    resolution: Resolution
    prompt_tokens: int
    bound: RequestBound
    candidates: list[Target] = msgspec.field(default_factory=list)
    check_context: bool = False  # the prompt estimate is one prompt, comparable to a context window


def _narrowed(resolution: Resolution, kept: tuple[Target, ...]) -> Resolution:
    return Resolution(
        resolution.kind,
        resolution.tier,
        kept,
        resolution.pinned,
        resolution.strategy,
        resolution.fallback,
        resolution.reason,
    )


def only(
    resolution: Resolution,
    kinds: Collection[str],
    message: str = "/v1/messages serves Anthropic connections (and the offline mock) only; "
    "this model has none.",
    also: Collection[str] = (),
) -> Resolution:
    """Keep candidates of provider ``kinds`` (or on the connections named in ``also``)."""
    kept = tuple(t for t in resolution.candidates if t.provider in kinds or t.connection in also)
    if not kept:
        raise ApiError(400, message, code="unsupported_for_model")
    return _narrowed(resolution, kept)


def without(resolution: Resolution, kinds: Collection[str]) -> Resolution:
    kept = tuple(t for t in resolution.candidates if t.provider not in kinds)
    if not kept:
        raise ApiError(
            400, "This model's providers do not support this endpoint.", code="unsupported_for_model"
        )
    return _narrowed(resolution, kept)


def _checks_context(op: Operation, request: dict[str, Any]) -> bool:
    """Whether the prompt estimate is one model input. Embeddings and batched completion prompts
    are limited per item, so their total says nothing about a context window."""
    if op in ("chat", "messages", "responses"):
        return True
    return op == "completions" and isinstance(request.get("prompt"), str)


def _fitting(resolution: Resolution, prompt_tokens: int) -> tuple[Target, ...]:
    return tuple(
        t
        for t in resolution.candidates
        if t.spec.context_window is None or prompt_tokens <= t.spec.context_window
    )


def within_context(resolution: Resolution, prompt_tokens: int, param: str = "messages") -> Resolution:
    """Drop candidates whose context window cannot hold the prompt; 400 when none can (fault 4)."""
    kept = _fitting(resolution, prompt_tokens)
    if kept or not resolution.candidates:  # no candidate at all is the pipeline's 503, not this 400
        return _narrowed(resolution, kept)
    largest = max(t.spec.context_window or 0 for t in resolution.candidates)
    raise ApiError(
        400,
        f"The prompt is about {prompt_tokens:,} tokens, more than the context window of any model "
        f"this request may go to (at most {largest:,} tokens). Shorten it.",
        code="context_length_exceeded",
        param=param,
    )


def plan_request(
    catalog: ModelCatalog,
    op: Operation,
    request: dict[str, Any],
    model: str,
    hint: str | None,
    pin: tuple[str, Collection[str]] | None = None,
    outputs: tuple[int, int | None] = (1, None),
) -> Plan:
    """Resolve ``model`` for ``op``; ``pin`` is (provider kind, connections declaring it) from /v1/proxy;
    ``outputs`` is the request's (n, best_of)."""
    if pin is not None and "/" not in model and model != "auto" and not model.startswith("tier:"):
        model = f"{pin[0]}/{model}"  # a bare name under /v1/proxy/<kind>/ means that provider's model
    prompt_tokens = estimate_prompt_tokens("messages" if op == "count_tokens" else op, request)
    try:
        resolution = resolve(model, catalog, lambda: features_of(request, prompt_tokens), hint)
    except InvalidModel as exc:
        raise ApiError(400, str(exc), code="invalid_model", param="model") from None
    except UnknownModel as exc:
        raise ApiError(404, str(exc), code="model_not_found", param="model") from None
    if op == "messages":  # the mock speaks Messages too, whatever kind it stands in for
        resolution = only(resolution, ("anthropic", "mock"))
    elif op in ("completions", "embeddings"):
        resolution = without(resolution, ("anthropic",) if op == "embeddings" else ("anthropic", "gemini"))
    if pin is not None:  # TOLVYN-style /v1/proxy/<provider>/...: only that provider serves
        kind, declared = pin
        resolution = only(resolution, (kind,), f"No {kind} connection serves this model.", declared)
    check = op != "count_tokens" and _checks_context(op, request)  # counting a long prompt is fine
    if check:
        param = {"completions": "prompt", "responses": "input"}.get(op, "messages")
        resolution = within_context(resolution, prompt_tokens, param)
    bound = request_bound(op, request, *outputs)
    return Plan(resolution, prompt_tokens, bound, list(resolution.candidates), check)


def reroute(catalog: ModelCatalog, plan: Plan, action: str, target_tier: str | None, policy: str) -> Plan:
    """DOWNGRADE / LIGHT_ONLY: the same request on a lighter tier; a pinned request is refused (402)."""
    if action == "LIGHT_ONLY":
        tiers = catalog.tiers_by_rank()
        target_tier = tiers[0].name if tiers else None
    tier = catalog.tier(target_tier) if target_tier else None
    if plan.resolution.pinned or tier is None:
        raise budget_exceeded(policy, "a lighter tier is not available for this request")
    resolution = Resolution(
        "tier", tier.name, catalog.tier_targets(tier.name), False, tier.strategy, tier.fallback
    )
    if plan.check_context and resolution.candidates:
        kept = _fitting(resolution, plan.prompt_tokens)
        if not kept:
            raise budget_exceeded(policy, "the lighter tier's models cannot hold this prompt")
        resolution = _narrowed(resolution, kept)
    return Plan(resolution, plan.prompt_tokens, plan.bound, list(resolution.candidates), plan.check_context)
