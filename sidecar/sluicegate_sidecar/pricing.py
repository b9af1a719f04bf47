"""Integer pricing of token usage on the signed price book. Pure.

Rates are micro-USD per million tokens; costs are micro-USD, rounded up so that a
reservation or a charge is never below the true price.
"""

from __future__ import annotations

from sluicegate_contract.schema import ModelPrice, Rates

from .providers.base import Usage

_MTOK = 1_000_000


def rates_for(price: ModelPrice, input_tokens: int) -> Rates:
    """The rates that apply to a request with ``input_tokens`` prompt tokens (prompt-size tiers)."""
    chosen = price.base
    for tier in price.tiers:
        if input_tokens > tier.above_input_tokens:
            chosen = tier.rates
    return chosen


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def cost_micro_usd(price: ModelPrice, usage: Usage) -> int:
    """What ``usage`` costs on ``price``, in micro-USD, rounded up."""
    rates = rates_for(price, usage.input_tokens)
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    plain = usage.input_tokens - cached - written
    cached_rate = rates.input_per_mtok if rates.cached_input_per_mtok is None else rates.cached_input_per_mtok
    write_rate = rates.input_per_mtok if rates.cache_write_per_mtok is None else rates.cache_write_per_mtok
    scaled = (
        plain * rates.input_per_mtok
        + cached * cached_rate
        + written * write_rate
        + usage.output_tokens * rates.output_per_mtok
    )
    return _ceil_div(scaled, _MTOK)


def _highest_input_rate(rates: Rates) -> int:
    """Whatever mix of plain, cached and cache-write tokens the prompt turns out to be."""
    return max(rates.input_per_mtok, rates.cached_input_per_mtok or 0, rates.cache_write_per_mtok or 0)


def worst_case_micro_usd(price: ModelPrice, input_tokens: int, output_tokens: int, n: int = 1) -> int:
    """The most a request can cost: every input token uncached at its highest rate, the full output cap."""
    rates = rates_for(price, input_tokens)
    input_rate = _highest_input_rate(rates)
    per_choice_output = output_tokens * rates.output_per_mtok
    return _ceil_div(input_tokens * input_rate + n * per_choice_output, _MTOK)


def max_output_tokens_within(price: ModelPrice, input_tokens: int, n: int, budget_micro_usd: int) -> int:
    """The largest output cap whose worst case fits in ``budget_micro_usd`` (0 if not even the input fits)."""
    rates = rates_for(price, input_tokens)
    input_rate = _highest_input_rate(rates)
    room = budget_micro_usd * _MTOK - input_tokens * input_rate
    if room < 0:
        return 0
    per_token = rates.output_per_mtok * max(n, 1)
    if per_token == 0:
        return 2**31
    return room // per_token
