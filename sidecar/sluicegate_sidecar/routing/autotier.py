"""The ``auto`` classifier: pick the lightest tier whose ``spec.auto`` admits a request, and say why.

Pure and cheap: it reads a few request fields and the prompt-token estimate; it never calls a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from sluicegate_contract.schema import AutoRule, Tier

_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
_JSON_FORMATS = frozenset({"json_object", "json_schema"})


class NoAutoTier(LookupError):
    """No tier has an enabled ``spec.auto`` and a usable candidate: ``auto`` cannot be served."""


class RequestFeatures(msgspec.Struct, frozen=True, gc=False):
    """What the classifier looks at. ``output_cap`` is the client's ``max_tokens`` (None: not set)."""

    prompt_tokens: int
    output_cap: int | None = None
    has_tools: bool = False
    has_images: bool = False
    json_mode: bool = False
    stream: bool = False


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _part_is_image(part: object) -> bool:
    if not isinstance(part, dict):
        return False
    kind = part.get("type")
    if kind in _IMAGE_PART_TYPES:
        return True
    if kind == "tool_result":  # Anthropic: images can sit inside a tool result
        inner = part.get("content")
        return isinstance(inner, list) and any(_part_is_image(p) for p in inner)
    return False


def _has_images(messages: object) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, list) and any(_part_is_image(p) for p in content):
                return True
    return False


def _json_mode(request: Mapping[str, Any]) -> bool:
    for field in ("response_format", "output_format"):  # OpenAI; Anthropic structured outputs
        value = request.get(field)
        if isinstance(value, dict) and value.get("type") in _JSON_FORMATS:
            return True
    text = request.get("text")  # the Responses API: text.format
    value = text.get("format") if isinstance(text, dict) else None
    return isinstance(value, dict) and value.get("type") in _JSON_FORMATS


def features_of(request: Mapping[str, Any], prompt_tokens: int) -> RequestFeatures:
    """The classifier's view of a decoded chat, messages, responses, completions or embeddings request."""
    output_cap = _positive_int(request.get("max_completion_tokens"))
    if output_cap is None:
        output_cap = _positive_int(request.get("max_tokens"))
    if output_cap is None:
        output_cap = _positive_int(request.get("max_output_tokens"))
    tools = request.get("tools") or request.get("functions")
    return RequestFeatures(
        prompt_tokens=prompt_tokens,
        output_cap=output_cap,
        has_tools=bool(tools),
        has_images=_has_images(request.get("messages")) or _has_images(request.get("input")),
        json_mode=_json_mode(request),
        stream=request.get("stream") is True,
    )


def _refusal(rule: AutoRule, features: RequestFeatures) -> str | None:
    """Why ``rule`` refuses ``features`` (short, for the explanation), or None if it admits them."""
    if rule.max_prompt_tokens is not None and features.prompt_tokens > rule.max_prompt_tokens:
        return f"{features.prompt_tokens:,} prompt tokens > {rule.max_prompt_tokens:,}"
    # A request without max_tokens is not refused for it: the pipeline clamps the cap later.
    cap = features.output_cap
    if rule.max_output_tokens is not None and cap is not None and cap > rule.max_output_tokens:
        return f"output cap {cap:,} > {rule.max_output_tokens:,}"
    if features.has_tools and not rule.allow_tools:
        return "tools not allowed"
    if features.has_images and not rule.allow_vision:
        return "images not allowed"
    if features.json_mode and not rule.allow_json:
        return "json mode not allowed"
    return None


def _admission(rule: AutoRule | None, features: RequestFeatures) -> str:
    """The facts that made ``rule`` admit ``features``, e.g. ``1,234 prompt tokens <= 4,000, no tools``.

    With ``rule`` None (the fallback tier) the facts are stated without comparisons.
    """
    facts = [f"{features.prompt_tokens:,} prompt tokens"]
    if rule is not None and rule.max_prompt_tokens is not None:
        facts[0] += f" <= {rule.max_prompt_tokens:,}"
    if features.output_cap is not None:
        cap = f"output cap {features.output_cap:,}"
        if rule is not None and rule.max_output_tokens is not None:
            cap += f" <= {rule.max_output_tokens:,}"
        facts.append(cap)
    facts.append("tools" if features.has_tools else "no tools")
    if features.has_images:
        facts.append("images")
    if features.json_mode:
        facts.append("json")
    return ", ".join(facts)


def _eligible(tier: Tier) -> AutoRule | None:
    rule = tier.auto
    if rule is None or not rule.enabled or not tier.candidates:
        return None
    return rule


def choose_tier(features: RequestFeatures, tiers: Sequence[Tier], hint: str | None) -> tuple[Tier, str]:
    """The lightest eligible tier that admits ``features``, and an ASCII explanation.

    ``tiers`` are sorted lightest first. A tier is eligible when its ``spec.auto`` is present and
    enabled and it has a candidate. ``hint`` (``X-Sluicegate-Tier-Hint``) names a tier: the choice
    then starts at that tier's rank and never goes lighter, still checking admission upward. A
    hint naming no tier, or a tier heavier than every eligible one, is ignored (and said so).
    When no eligible tier admits the request, the heaviest eligible one serves it. Raises
    ``NoAutoTier`` when no tier is eligible. The explanation is ASCII so that it can travel in a
    response header.
    """
    eligible = [(tier, rule) for tier in tiers if (rule := _eligible(tier)) is not None]
    if not eligible:
        raise NoAutoTier("no tier accepts model 'auto'")
    notes: list[str] = []
    floor: int | None = None
    if hint is not None:
        wanted = hint.strip().lower()
        hinted = next((t for t in tiers if t.name == wanted), None)
        if hinted is None:
            notes.append("hint ignored (no such tier)")
        elif eligible[-1][0].rank < hinted.rank:
            notes.append(f"hint {hinted.name} ignored (heavier than every auto tier)")
        else:
            floor = hinted.rank
            notes.append(f"hint {hinted.name}")
    skipped: list[str] = []
    for tier, rule in eligible:
        if floor is not None and tier.rank < floor:
            continue
        refusal = _refusal(rule, features)
        if refusal is None:
            return tier, _explain(_admission(rule, features), tier, skipped, notes)
        skipped.append(f"{tier.name}: {refusal}")
    tier = eligible[-1][0]
    notes.append("no tier admits, heaviest")
    return tier, _explain(_admission(None, features), tier, skipped, notes)


def _explain(facts: str, tier: Tier, skipped: list[str], notes: list[str]) -> str:
    text = f"auto: {facts} -> {tier.name}"
    extra = [f"skipped {s}" for s in skipped] + notes
    if extra:
        text += " (" + "; ".join(extra) + ")"
    return text
