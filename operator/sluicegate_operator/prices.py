"""Price resolution at render time: the genai-prices catalog, or a ProviderConnection's override.

Pure: the catalog is the package's bundled snapshot (its background updater is never started);
the render time is an argument so historic prices resolve as they were.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from genai_prices import Usage, calc_price
from genai_prices.types import TieredPrices

from sluicegate_contract.money import MICRO_USD
from sluicegate_contract.pricecatalog import CATALOG_PROVIDER
from sluicegate_contract.schema import ModelPrice, PriceTier, Rates

_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    price: ModelPrice
    context_window: int | None
    deprecated: bool = False  # the catalog's flag (no date): deprecated by the provider, still served


def is_embedding_model(model_id: str) -> bool:
    """Embedding models (OpenAI ``text-embedding-*``, Google ``gemini-embedding-*``, ``mistral-embed``)."""
    return "embed" in model_id.lower()


_CATALOG_VERSION = "genai-prices " + importlib.metadata.version("genai-prices")  # read once: a file lookup


def catalog_version() -> str:
    return _CATALOG_VERSION


def usd_per_mtok_to_micro(value: Decimal | float | int) -> int:
    """USD per million tokens → micro-USD per million tokens, rounded up (never under-price)."""
    micro = Decimal(str(value)) * MICRO_USD
    return int(micro.to_integral_value(rounding=ROUND_CEILING))


def _at(value: Decimal | TieredPrices | None, input_tokens: int) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    chosen = value.base
    for tier in value.tiers:
        if input_tokens > tier.start:
            chosen = tier.price
    return chosen


def _rates(values: dict[str, Decimal | TieredPrices | None], input_tokens: int) -> Rates:
    got = {key: _at(values.get(key), input_tokens) for key in _KEYS}
    cached, write = got["cache_read_mtok"], got["cache_write_mtok"]
    return Rates(
        input_per_mtok=usd_per_mtok_to_micro(got["input_mtok"] or 0),
        output_per_mtok=usd_per_mtok_to_micro(got["output_mtok"] or 0),
        cached_input_per_mtok=None if cached is None else usd_per_mtok_to_micro(cached),
        cache_write_per_mtok=None if write is None else usd_per_mtok_to_micro(write),
    )


def catalog_price(provider_kind: str, model: str, when: datetime) -> CatalogEntry | None:
    """The catalog's rates for ``model`` at ``when``, prompt-size tiers included; None when unknown."""
    provider_id = CATALOG_PROVIDER.get(provider_kind)
    if provider_id is None:
        return None
    try:
        calc = calc_price(
            Usage(input_tokens=0, output_tokens=0),
            model,
            provider_id=provider_id,
            genai_request_timestamp=when,
        )
    except LookupError:
        return None
    values: dict[str, Decimal | TieredPrices | None] = {
        key: getattr(calc.model_price, key, None) for key in _KEYS
    }
    if values["input_mtok"] is None:
        return None
    if values["output_mtok"] is None:
        if not is_embedding_model(calc.model.id):
            return None  # a generative model without an output rate is unpriced, never priced at 0
        values["output_mtok"] = Decimal(0)  # embeddings bill input only: the catalog lists no output
    thresholds = sorted(
        {tier.start for value in values.values() if isinstance(value, TieredPrices) for tier in value.tiers}
    )
    tiers = tuple(
        PriceTier(above_input_tokens=start, rates=_rates(values, start + 1)) for start in thresholds
    )
    price = ModelPrice(source="catalog", base=_rates(values, 0), tiers=tiers)
    return CatalogEntry(
        price=price, context_window=calc.model.context_window, deprecated=calc.model.deprecated is True
    )
