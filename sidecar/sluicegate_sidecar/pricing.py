"""Integer pricing of token usage on the signed price book. Pure.

Rates are micro-USD per million tokens; costs are micro-USD, rounded up so that a
reservation or a charge is never below the true price.
"""

from __future__ import annotations

from sluicegate_contract.bookprice import ceil_div as _ceil_div
from sluicegate_contract.bookprice import rates_for, tokens_cost_micro_usd
from sluicegate_contract.schema import ModelPrice, Rates

from .providers.base import Usage

_MTOK = 1_000_000

__all__ = ["cost_micro_usd", "max_output_tokens_within", "rates_for", "worst_case_micro_usd"]


def cost_micro_usd(price: ModelPrice, usage: Usage) -> int:
    """What ``usage`` costs on ``price``, in micro-USD, rounded up (the contract's book rule)."""
    return tokens_cost_micro_usd(
        price, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cache_write_tokens
    )


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
