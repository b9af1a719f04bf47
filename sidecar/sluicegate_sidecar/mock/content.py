"""What the mock provider says: deterministic text, tool-call arguments, embedding vectors and token
counts. Pure: a function of the digest and seeds it is handed; no transport, no clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

_SENTENCES = (
    "The gateway routes each request to the cheapest model that fits",
    "Every token is counted before the reply reaches the app",
    "Budgets are checked locally so the added latency stays small",
    "A fallback model answers when the first provider is busy",
    "Teams can see their spend for each feature and service",
    "Streaming replies arrive one token at a time",
    "This answer comes from the mock provider and nothing was billed",
    "Prices come from a signed price book that every replica shares",
    "The sidecar keeps spend inside the configured cap",
    "Retries happen only before the first byte reaches the client",
    "The same request and seed always get the same reply",
    "Lighter tiers take over when a budget runs low",
)
_ARGUMENT_VALUES = ("Paris", "quarterly report", "blue", "tomorrow", "order 1234", "Lisbon")
_COMPLETION_DETAILS = (
    "reasoning_tokens",
    "audio_tokens",
    "accepted_prediction_tokens",
    "rejected_prediction_tokens",
)


@dataclass(frozen=True, slots=True)
class Choice:
    """One generated choice: text pieces (one per token) or a tool call."""

    pieces: tuple[str, ...]
    finish_reason: str
    completion_tokens: int
    tool_name: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def estimate_tokens(text: str) -> int:
    """A simple token estimate: about four characters per token, at least one for non-empty text."""
    return (len(text) + 3) // 4


def _tool_arguments(function: Mapping[str, Any], rng: random.Random) -> str:
    """``{}``, or the schema's required string properties filled with words."""
    schema = function.get("parameters")
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    required = schema.get("required", []) if isinstance(schema, dict) else []
    filled = {
        name: rng.choice(_ARGUMENT_VALUES)
        for name in required
        if isinstance(name, str) and isinstance(props.get(name), dict) and props[name].get("type") == "string"
    }
    return msgspec.json.encode(filled).decode()


def generate_choice(digest: bytes, index: int, limit: int | None, tool: Mapping[str, Any] | None) -> Choice:
    """Choice ``index`` for a request hashed to ``digest``: text up to ``limit`` tokens, or a tool call."""
    rng = random.Random(digest + index.to_bytes(4, "big"))
    if tool is not None:
        arguments = _tool_arguments(tool, rng)
        pieces = tuple(arguments[i : i + 8] for i in range(0, len(arguments), 8))
        count = estimate_tokens(tool["name"]) + estimate_tokens(arguments)
        return Choice(pieces, "tool_calls", count, tool_name=tool["name"])
    target = rng.randint(40, 72)
    tokens: list[str] = []
    while len(tokens) < target:
        sentence = rng.choice(_SENTENCES).split()
        tokens += [(" " if tokens or i else "") + word for i, word in enumerate(sentence)] + ["."]
    if limit is not None and limit < len(tokens):
        return Choice(tuple(tokens[:limit]), "length", limit)
    return Choice(tuple(tokens), "stop", len(tokens))


def usage_object(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The ``usage`` object OpenAI sends, with every detail field at zero."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": dict.fromkeys(_COMPLETION_DETAILS, 0),
    }


def unit_vector(seed: bytes, dimensions: int) -> list[float]:
    """A random unit vector of ``dimensions`` floats, the same for the same ``seed``."""
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]
