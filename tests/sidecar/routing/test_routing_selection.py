"""Candidate order within a tier: cheapest for this request, ordered, weighted; unusable skipped."""

from __future__ import annotations

import random
from collections import Counter

from sluicegate_contract.schema import PriceTier, Rates
from sluicegate_sidecar.routing.catalog import Target
from sluicegate_sidecar.routing.selection import (
    ASSUMED_OUTPUT_TOKENS,
    expected_cost_micro_usd,
    order_candidates,
)
from tests.support.routing_configs import model, price

# Cheap to read, dear to write; and the reverse.
READER = Target("a", "openai", "reader", model("reader", cost=price(1_000_000, 20_000_000)))
WRITER = Target("b", "anthropic", "writer", model("writer", cost=price(3_000_000, 4_000_000)))
UNPRICED = Target("c", "openai-compatible", "local", model("local"))


def names(targets):
    return [t.model for t in targets]


def cheapest(candidates, prompt_tokens, output_cap, usable=lambda t: True):
    return order_candidates(
        "cheapest",
        candidates,
        lambda t: expected_cost_micro_usd(t, prompt_tokens, output_cap),
        random.Random(0),
        usable,
    )


def test_cheapest_follows_the_request_size_not_just_the_list_price():
    # 10,000 in / 100 out: reader 12,000 µUSD, writer 30,400 µUSD.
    assert names(cheapest([WRITER, READER], 10_000, 100)) == ["reader", "writer"]
    # 1,000 in / 4,000 out: reader 81,000 µUSD, writer 19,000 µUSD.
    assert names(cheapest([READER, WRITER], 1_000, 4_000)) == ["writer", "reader"]


def test_expected_cost_is_prompt_at_input_rate_plus_output_cap_at_output_rate():
    assert expected_cost_micro_usd(READER, 10_000, 100) == 12_000
    assert expected_cost_micro_usd(WRITER, 1_000, 4_000) == 19_000
    assert expected_cost_micro_usd(WRITER, 0, None) == 4 * ASSUMED_OUTPUT_TOKENS
    assert expected_cost_micro_usd(WRITER, 0, 10, n=3) == 120
    assert expected_cost_micro_usd(UNPRICED, 10, 10) is None


def test_prompt_size_price_tiers_can_change_the_cheapest_candidate():
    long_context_dear = Target(
        "d",
        "gemini",
        "tiered",
        model(
            "tiered",
            cost=price(
                1_000_000,
                4_000_000,
                tiers=(
                    PriceTier(
                        above_input_tokens=200_000,
                        rates=Rates(input_per_mtok=5_000_000, output_per_mtok=8_000_000),
                    ),
                ),
            ),
        ),
    )
    flat = Target("e", "openai", "flat", model("flat", cost=price(2_000_000, 4_000_000)))
    assert names(cheapest([flat, long_context_dear], 100_000, 100)) == ["tiered", "flat"]
    assert names(cheapest([flat, long_context_dear], 300_000, 100)) == ["flat", "tiered"]


def test_unpriced_candidates_go_last_and_ties_keep_declared_order():
    twin = Target("z", "openai", "reader", READER.spec)
    assert names(cheapest([UNPRICED, twin, READER], 10, 10)) == ["reader", "reader", "local"]
    assert [t.connection for t in cheapest([UNPRICED, twin, READER], 10, 10)] == ["z", "a", "c"]


def test_ordered_keeps_the_declared_order_whatever_the_price():
    order = order_candidates(
        "ordered", [WRITER, UNPRICED, READER], lambda t: 0, random.Random(0), lambda t: True
    )
    assert names(order) == ["writer", "local", "reader"]


def test_unusable_candidates_are_skipped_and_none_usable_gives_an_empty_list():
    not_reader = lambda t: t is not READER  # noqa: E731
    assert names(cheapest([READER, WRITER, UNPRICED], 10_000, 100, not_reader)) == ["writer", "local"]
    for strategy in ("cheapest", "ordered", "weighted"):
        assert (
            order_candidates(strategy, [READER, WRITER], lambda t: 1, random.Random(0), lambda t: False) == []
        )


def test_weighted_first_pick_follows_the_weights_over_many_draws():
    light = Target("a", "openai", "m1", READER.spec, weight=1)
    mid = Target("b", "openai", "m3", READER.spec, weight=3)
    heavy = Target("c", "openai", "m6", READER.spec, weight=6)
    rng = random.Random(1234)
    firsts: Counter[str] = Counter()
    for _ in range(10_000):
        order = order_candidates("weighted", [light, mid, heavy], lambda t: None, rng, lambda t: True)
        assert sorted(names(order)) == ["m1", "m3", "m6"]
        firsts[order[0].model] += 1
    assert abs(firsts["m1"] / 10_000 - 0.1) < 0.02
    assert abs(firsts["m3"] / 10_000 - 0.3) < 0.02
    assert abs(firsts["m6"] / 10_000 - 0.6) < 0.02


def test_weighted_second_pick_is_drawn_from_the_rest_by_weight():
    a = Target("a", "openai", "a", READER.spec, weight=8)
    b = Target("b", "openai", "b", READER.spec, weight=1)
    c = Target("c", "openai", "c", READER.spec, weight=1)
    rng = random.Random(7)
    seconds: Counter[str] = Counter()
    for _ in range(10_000):
        order = order_candidates("weighted", [a, b, c], lambda t: None, rng, lambda t: True)
        if order[0] is a:
            seconds[order[1].model] += 1
    assert abs(seconds["b"] / sum(seconds.values()) - 0.5) < 0.03


def test_zero_weight_candidates_are_only_fallbacks_in_declared_order():
    spare1 = Target("s1", "openai", "s1", READER.spec, weight=0)
    main = Target("m", "openai", "main", READER.spec, weight=5)
    spare2 = Target("s2", "openai", "s2", READER.spec, weight=0)
    rng = random.Random(3)
    for _ in range(100):
        order = order_candidates("weighted", [spare1, main, spare2], lambda t: None, rng, lambda t: True)
        assert names(order) == ["main", "s1", "s2"]


def test_the_same_seed_gives_the_same_weighted_order():
    pool = [Target(str(i), "openai", f"m{i}", READER.spec, weight=i + 1) for i in range(5)]
    first = order_candidates("weighted", pool, lambda t: None, random.Random(99), lambda t: True)
    again = order_candidates("weighted", pool, lambda t: None, random.Random(99), lambda t: True)
    assert first == again
