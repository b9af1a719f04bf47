"""What the mock provider says, whatever the protocol: deterministic text, tool calls (which tool,
with arguments generated from its schema), JSON for a requested schema, logprobs, embedding vectors
and token counts. Pure: a function of the digest and seeds it is handed; no transport, no clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .schema import value_from_schema

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
ToolMode = Literal["auto", "none", "required", "named"]
JSON_OBJECT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}  # what a bare "JSON mode" request (no schema) gets
_ALTERNATIVES = (" the", " a", " and", " of", " to", ",", " it", " is", " for", " on", " with", " that")
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


def tool_to_call(
    functions: Sequence[Mapping[str, Any]], mode: ToolMode, name: str | None, user_turn: bool
) -> Mapping[str, Any] | None:
    """The function (``{"name", "parameters"}``) a reply calls, or None for a text answer.

    ``none`` never calls; ``named`` calls that one; ``required`` the first; ``auto`` the first
    when the conversation ends with the user's turn (not with a tool's result), so an agent loop
    gets one call and then, after the tool's output, an answer in text.
    """
    if not functions or mode == "none":
        return None
    if mode == "named":
        return next((f for f in functions if f.get("name") == name), None)
    if mode == "required" or user_turn:
        return functions[0]
    return None


def _pieces(text: str) -> tuple[str, ...]:
    return tuple(text[i : i + 8] for i in range(0, len(text), 8)) or ("",)


def generate_choice(
    digest: bytes,
    index: int,
    limit: int | None,
    tool: Mapping[str, Any] | None,
    json_schema: Mapping[str, Any] | None = None,
) -> Choice:
    """Choice ``index`` for a request hashed to ``digest``: a tool call (arguments from its schema),
    JSON valid under ``json_schema``, or prose; text is cut at ``limit`` tokens ("length")."""
    rng = random.Random(digest + index.to_bytes(4, "big"))
    if tool is not None:
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        arguments = msgspec.json.encode(value_from_schema(schema, rng)).decode()
        count = estimate_tokens(tool["name"]) + estimate_tokens(arguments)
        return Choice(_pieces(arguments), "tool_calls", count, tool_name=tool["name"])
    if json_schema is not None:
        text = msgspec.json.encode(value_from_schema(json_schema, rng)).decode()
        pieces = _pieces(text)
        if limit is not None and limit < len(pieces):
            return Choice(pieces[:limit], "length", limit)
        return Choice(pieces, "stop", len(pieces))
    target = rng.randint(40, 72)
    tokens: list[str] = []
    while len(tokens) < target:
        sentence = rng.choice(_SENTENCES).split()
        tokens += [(" " if tokens or i else "") + word for i, word in enumerate(sentence)] + ["."]
    if limit is not None and limit < len(tokens):
        return Choice(tuple(tokens[:limit]), "length", limit)
    return Choice(tuple(tokens), "stop", len(tokens))


def token_logprobs(digest: bytes, index: int, pieces: Sequence[str], top: int) -> list[dict[str, Any]]:
    """OpenAI chat logprobs entries, one per token: the token's, and ``top`` alternatives (the
    token itself first, as the most likely); plausible, deterministic, never above 0."""
    rng = random.Random(digest + b"logprobs" + index.to_bytes(4, "big"))
    entries = []
    for piece in pieces:
        own = -round(rng.random() * 0.5, 6)
        others = [t for t in _ALTERNATIVES if t != piece]
        rng.shuffle(others)
        tops = [(piece, own)] + [(t, round(own - 1 - rng.random() * 4, 6)) for t in others[: max(top - 1, 0)]]
        entries.append(
            {
                "token": piece,
                "logprob": own,
                "bytes": list(piece.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tops[:top]
                ],
            }
        )
    return entries


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
