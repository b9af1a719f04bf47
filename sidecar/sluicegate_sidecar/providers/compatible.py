"""OpenAI-compatible providers (Mistral, Groq, Together, any OpenAI-compatible server, the mock): the
OpenAI adapter with each kind's default base URL and quirks. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .openai import OpenAIAdapter

MOCK_BASE_URL = "http://mock.sluicegate.invalid/v1"

_DEFAULT_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {
        "mistral": "https://api.mistral.ai/v1",
        "groq": "https://api.groq.com/openai/v1",
        "together": "https://api.together.xyz/v1",
        "mock": MOCK_BASE_URL,
    }
)
COMPATIBLE_KINDS = ("mistral", "groq", "together", "openai-compatible", "mock")


def default_base_url(kind: str) -> str | None:
    """The base URL (with ``/v1``) used when a connection of ``kind`` names none."""
    return _DEFAULT_BASE_URLS.get(kind)


def compatible_adapter(kind: str) -> OpenAIAdapter:
    """The adapter for one OpenAI-compatible ``kind``."""
    if kind not in COMPATIBLE_KINDS:
        raise ValueError(f"{kind!r} is not an OpenAI-compatible provider kind")
    # Mistral refuses unknown fields (stream_options, max_completion_tokens) with 422 and reports
    # stream usage in its last chunk unasked.
    mistral = kind == "mistral"
    return OpenAIAdapter(
        provider=kind,
        default_base_url=default_base_url(kind),
        stream_usage_option=not mistral,
        max_tokens_only=mistral,
        completion_tokens_field=False,  # max_tokens is the field every compatible server knows
    )
