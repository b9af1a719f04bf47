"""Where each provider kind's models are in the bundled price catalog (``genai-prices``).

Render prices connections with it; the reports price ledger entries by the same ids. ``mock`` and
``openai-compatible`` have no catalog entry: their models are priced on the ProviderConnection.
"""

from __future__ import annotations

from collections.abc import Mapping

CATALOG_PROVIDER: Mapping[str, str] = {  # ProviderKind → genai-prices provider_id
    "openai": "openai",
    "azure-openai": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "mistral": "mistral",
    "groq": "groq",
    "together": "together",
}
