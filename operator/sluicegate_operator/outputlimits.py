"""Models' own output limits (max output tokens a request may ask for), for models whose
ProviderConnection entry declares no ``maxOutputTokens``. Pure.

genai-prices carries context windows but no output limits, so this is a small maintained table of
the providers' documented limits. A dated snapshot (``-2024-08-06``, ``-20250514``, ``-0125``,
``-001``) or ``-latest`` resolves to its family unless the snapshot is listed itself. A model not
listed stays unknown: the sidecar then sends a conservative cap under a budget (see README).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|latest)$")

OUTPUT_LIMITS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "openai": MappingProxyType(
            {
                "gpt-5": 128_000,
                "gpt-5-mini": 128_000,
                "gpt-5-nano": 128_000,
                "gpt-5-chat": 16_384,
                "gpt-4.1": 32_768,
                "gpt-4.1-mini": 32_768,
                "gpt-4.1-nano": 32_768,
                "gpt-4o": 16_384,
                "gpt-4o-2024-05-13": 4_096,
                "gpt-4o-mini": 16_384,
                "chatgpt-4o": 16_384,
                "gpt-4-turbo": 4_096,
                "gpt-4": 8_192,
                "gpt-3.5-turbo": 4_096,
                "gpt-3.5-turbo-instruct": 4_096,
                "o1": 100_000,
                "o1-mini": 65_536,
                "o1-preview": 32_768,
                "o3": 100_000,
                "o3-mini": 100_000,
                "o4-mini": 100_000,
            }
        ),
        "anthropic": MappingProxyType(
            {
                "claude-3-haiku": 4_096,
                "claude-3-opus": 4_096,
                "claude-3-5-haiku": 8_192,
                "claude-3-5-sonnet": 8_192,
                "claude-3-7-sonnet": 64_000,
                "claude-sonnet-4": 64_000,
                "claude-opus-4": 32_000,
                "claude-opus-4-1": 32_000,
                "claude-sonnet-4-5": 64_000,
                "claude-haiku-4-5": 64_000,
                "claude-opus-4-5": 64_000,
            }
        ),
        "gemini": MappingProxyType(
            {
                "gemini-1.5-pro": 8_192,
                "gemini-1.5-flash": 8_192,
                "gemini-2.0-flash": 8_192,
                "gemini-2.0-flash-lite": 8_192,
                "gemini-2.5-pro": 65_536,
                "gemini-2.5-flash": 65_536,
                "gemini-2.5-flash-lite": 65_536,
            }
        ),
    }
)
_SAME_MODELS = {"azure-openai": "openai"}  # Azure serves OpenAI's models under their own names


def known_output_limit(provider_kind: str, model: str) -> int | None:
    """The documented output limit of ``model`` on ``provider_kind``, or None when not listed."""
    table = OUTPUT_LIMITS.get(_SAME_MODELS.get(provider_kind, provider_kind))
    if table is None:
        return None
    name = model.lower()
    if name in table:
        return table[name]
    family = _SNAPSHOT.sub("", name)
    return table.get(family)
