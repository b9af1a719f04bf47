"""Maps a provider kind to its adapter. Adapters are stateless frozen values, built once at import
into a read-only mapping (ten small dataclass instances: no I/O, nothing to configure).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .anthropic import ANTHROPIC_BASE_URL, AnthropicAdapter
from .azure import AzureAdapter
from .base import Adapter
from .compatible import COMPATIBLE_KINDS, compatible_adapter
from .compatible import default_base_url as compatible_base_url
from .gemini import GEMINI_BASE_URL, GeminiAdapter
from .mock import MockAdapter
from .openai import OPENAI_BASE_URL, OpenAIAdapter


def build_adapters() -> Mapping[str, Adapter]:
    """Every provider kind's adapter, in a read-only mapping."""
    adapters: dict[str, Adapter] = {
        "openai": OpenAIAdapter(),
        "azure-openai": AzureAdapter(),
        "anthropic": AnthropicAdapter(),
        "gemini": GeminiAdapter(),
    }
    for kind in COMPATIBLE_KINDS:
        adapters[kind] = compatible_adapter(kind)
    adapters["mock"] = MockAdapter()  # OpenAI's and Anthropic's formats both, offline
    return MappingProxyType(adapters)


ADAPTERS: Mapping[str, Adapter] = build_adapters()


def adapter_for(kind: str) -> Adapter:
    """The adapter for provider ``kind``; ``KeyError`` for an unknown kind."""
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise KeyError(f"no adapter for provider kind {kind!r}") from None


def default_base_url(kind: str) -> str | None:
    """The base URL a connection of ``kind`` uses when it names none (None: it must name one)."""
    defaults = {"openai": OPENAI_BASE_URL, "anthropic": ANTHROPIC_BASE_URL, "gemini": GEMINI_BASE_URL}
    return defaults.get(kind) or compatible_base_url(kind)
