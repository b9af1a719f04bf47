"""What tokens cost on a signed price book's ``ModelPrice``: the one integer rule. Pure.

Rates are micro-USD per million tokens; costs are micro-USD, rounded up so that a reservation or a
charge is never below the true price. The sidecar charges with it; the reports re-price with it.
"""

from __future__ import annotations

from .schema import ModelPrice, Rates

_MTOK = 1_000_000


def rates_for(price: ModelPrice, input_tokens: int) -> Rates:
    """The rates that apply to a request with ``input_tokens`` prompt tokens (prompt-size tiers)."""
    chosen = price.base
    for tier in price.tiers:
        if input_tokens > tier.above_input_tokens:
            chosen = tier.rates
    return chosen


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def tokens_cost_micro_usd(
    price: ModelPrice, input_tokens: int, output_tokens: int, cached: int, written: int
) -> int:
    """What the tokens cost on ``price``, rounded up. ``input_tokens`` counts every prompt token;
    ``cached`` and ``written`` (cache reads and writes) are parts of it billed at their own rates."""
    rates = rates_for(price, input_tokens)
    cached = min(cached, input_tokens)
    written = min(written, input_tokens - cached)
    plain = input_tokens - cached - written
    cached_rate = rates.input_per_mtok if rates.cached_input_per_mtok is None else rates.cached_input_per_mtok
    write_rate = rates.input_per_mtok if rates.cache_write_per_mtok is None else rates.cache_write_per_mtok
    scaled = plain * rates.input_per_mtok + cached * cached_rate + written * write_rate
    return ceil_div(scaled + output_tokens * rates.output_per_mtok, _MTOK)
