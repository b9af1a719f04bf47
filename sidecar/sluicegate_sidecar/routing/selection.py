"""Ordering a resolution's candidates for one request: cheapest, ordered or weighted. Pure.

Takes prices, randomness and health as arguments; it dispatches nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from sluicegate_contract.schema import Strategy

from ..pricing import worst_case_micro_usd
from .catalog import Target

# The output assumed when a request sets no max_tokens: the same for every candidate, so the
# comparison stays fair (each model's own maximum would penalise the models that allow more).
ASSUMED_OUTPUT_TOKENS = 1_000


def expected_cost_micro_usd(
    target: Target, prompt_tokens: int, output_cap: int | None, n: int = 1
) -> int | None:
    """This request's price on ``target``: its prompt at the input rate (prompt-size tiers
    applied) plus its output cap at the output rate; None when the model is unpriced."""
    price = target.spec.price
    if price is None:
        return None
    output = ASSUMED_OUTPUT_TOKENS if output_cap is None else output_cap
    return worst_case_micro_usd(price, prompt_tokens, output, max(n, 1))


def _weighted(candidates: Sequence[Target], rng: random.Random) -> list[Target]:
    """Draw without replacement, each pick in proportion to weight; weight <= 0 go last, in order."""
    pool = [t for t in candidates if t.weight > 0]
    rest = [t for t in candidates if t.weight <= 0]
    ordered: list[Target] = []
    total = sum(t.weight for t in pool)
    while pool:
        point = rng.random() * total
        index = len(pool) - 1
        for i, target in enumerate(pool):
            point -= target.weight
            if point < 0:
                index = i
                break
        chosen = pool.pop(index)
        total -= chosen.weight
        ordered.append(chosen)
    return ordered + rest


def order_candidates(
    strategy: Strategy,
    candidates: Sequence[Target],
    expected_cost: Callable[[Target], int | None],
    rng: random.Random,
    usable: Callable[[Target], bool],
) -> list[Target]:
    """The candidates to try, in order, leaving out those ``usable`` rejects.

    cheapest: by ``expected_cost`` for this request, unpriced last, ties in declared order.
    ordered: declared order. weighted: by weight, drawn with ``rng`` without replacement.
    An empty result means nothing is usable now: the pipeline answers 503 (no attempt was made).
    Typically ``usable = lambda t: book.usable(t.connection, t.model, now)``.
    """
    alive = [t for t in candidates if usable(t)]
    if strategy == "ordered" or len(alive) < 2:
        return alive
    if strategy == "weighted":
        return _weighted(alive, rng)
    costs = {id(t): expected_cost(t) for t in alive}

    def sort_key(target: Target) -> tuple[bool, int]:
        cost = costs[id(target)]
        return (cost is None, 0 if cost is None else cost)

    return sorted(alive, key=sort_key)
