"""The ``auto`` classifier: features of a request, tier choice, hint and explanation."""

from __future__ import annotations

import pytest

from sluicegate_contract.schema import AutoRule
from sluicegate_sidecar.routing.autotier import NoAutoTier, RequestFeatures, choose_tier, features_of
from tests.support.routing_configs import tier

LIGHT = tier(
    "light",
    0,
    ("p", "small"),
    auto=AutoRule(max_prompt_tokens=4_000, max_output_tokens=1_000, allow_tools=False, allow_vision=False),
)
STANDARD = tier("standard", 10, ("p", "mid"), auto=AutoRule(max_prompt_tokens=100_000, allow_json=True))
HEAVY = tier("heavy", 20, ("p", "big"), auto=AutoRule())
MANUAL = tier("manual", 30, ("p", "huge"))
TIERS = [LIGHT, STANDARD, HEAVY, MANUAL]


def choose(hint=None, **features):
    chosen, reason = choose_tier(RequestFeatures(**{"prompt_tokens": 100, **features}), TIERS, hint)
    return chosen.name, reason


def test_a_small_plain_request_goes_to_the_lightest_tier_with_a_readable_reason():
    assert choose(prompt_tokens=1_234) == ("light", "auto: 1,234 prompt tokens <= 4,000, no tools -> light")


def test_a_long_prompt_skips_the_light_tier_and_says_why():
    name, reason = choose(prompt_tokens=12_000)
    assert name == "standard"
    assert reason == (
        "auto: 12,000 prompt tokens <= 100,000, no tools -> standard "
        "(skipped light: 12,000 prompt tokens > 4,000)"
    )


def test_tools_images_and_large_output_caps_each_push_past_a_tier_that_refuses_them():
    assert choose(has_tools=True) == (
        "standard",
        "auto: 100 prompt tokens <= 100,000, tools -> standard (skipped light: tools not allowed)",
    )
    assert choose(has_images=True)[0] == "standard"
    name, reason = choose(output_cap=4_000)
    assert name == "standard"
    assert "output cap 4,000 > 1,000" in reason


def test_a_request_without_max_tokens_is_not_refused_for_its_output():
    assert choose(output_cap=None)[0] == "light"
    assert choose(output_cap=1_000)[1] == (
        "auto: 100 prompt tokens <= 4,000, output cap 1,000 <= 1,000, no tools -> light"
    )


def test_json_mode_is_admitted_where_allowed_and_mentioned():
    name, reason = choose(json_mode=True)
    assert name == "light"
    assert reason.endswith("no tools, json -> light")
    refusing = tier("strict", 0, ("p", "x"), auto=AutoRule(allow_json=False))
    chosen, _ = choose_tier(RequestFeatures(prompt_tokens=1, json_mode=True), [refusing, HEAVY], None)
    assert chosen.name == "heavy"


def test_no_tier_admits_so_the_heaviest_auto_tier_serves_without_false_comparisons():
    tiers = [LIGHT, STANDARD]
    chosen, reason = choose_tier(RequestFeatures(prompt_tokens=500_000), tiers, None)
    assert chosen.name == "standard"
    assert "<=" not in reason
    assert reason.startswith("auto: 500,000 prompt tokens, no tools -> standard (")
    assert reason.endswith("no tier admits, heaviest)")


def test_tiers_without_auto_or_with_auto_disabled_are_never_chosen():
    disabled = tier("off", 0, ("p", "x"), auto=AutoRule(enabled=False))
    chosen, _ = choose_tier(RequestFeatures(prompt_tokens=1), [disabled, STANDARD, MANUAL], None)
    assert chosen.name == "standard"
    chosen, _ = choose_tier(RequestFeatures(prompt_tokens=10**7), [disabled, STANDARD, MANUAL], None)
    assert chosen.name == "standard"


def test_a_tier_with_no_candidates_is_not_eligible():
    empty = tier("empty", 0, auto=AutoRule())
    chosen, _ = choose_tier(RequestFeatures(prompt_tokens=1), [empty, HEAVY], None)
    assert chosen.name == "heavy"


def test_no_eligible_tier_raises():
    with pytest.raises(NoAutoTier):
        choose_tier(RequestFeatures(prompt_tokens=1), [MANUAL], None)


def test_a_hint_raises_the_floor_but_admission_is_still_checked_upward():
    name, reason = choose(hint="standard")
    assert name == "standard"
    assert reason.endswith("-> standard (hint standard)")
    name, reason = choose(hint=" Standard ", prompt_tokens=200_000)
    assert name == "heavy"
    assert "skipped standard: 200,000 prompt tokens > 100,000; hint standard" in reason


def test_a_hint_never_lowers_the_choice():
    assert choose(hint="light", has_tools=True)[0] == "standard"


def test_an_unknown_hint_is_ignored_without_being_echoed():
    name, reason = choose(hint="<script>")
    assert name == "light"
    assert "hint ignored (no such tier)" in reason
    assert "<script>" not in reason


def test_a_hint_above_every_auto_tier_is_ignored_and_said_so():
    name, reason = choose(hint="manual")
    assert name == "light"
    assert "hint manual ignored" in reason


def test_reasons_are_ascii_so_they_fit_a_header():
    for features in ({}, {"prompt_tokens": 10**6}, {"has_tools": True, "json_mode": True}):
        assert choose(**features)[1].isascii()


def test_features_of_a_chat_request():
    request = {
        "model": "auto",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_schema", "json_schema": {}},
        "max_tokens": 300,
        "stream": True,
    }
    assert features_of(request, 42) == RequestFeatures(
        prompt_tokens=42, output_cap=300, has_tools=True, has_images=True, json_mode=True, stream=True
    )


def test_features_of_a_plain_request_and_odd_values():
    plain = {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "text"}}
    assert features_of(plain, 5) == RequestFeatures(prompt_tokens=5)
    odd = {"messages": "nope", "max_tokens": True, "tools": [], "stream": "yes"}
    assert features_of(odd, 1) == RequestFeatures(prompt_tokens=1)


def test_max_completion_tokens_wins_over_max_tokens():
    assert features_of({"max_completion_tokens": 50, "max_tokens": 9_000}, 1).output_cap == 50


def test_features_of_an_anthropic_request_with_an_image_in_a_tool_result():
    request = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "image", "source": {"type": "base64", "data": "AAAA"}}],
                    }
                ],
            }
        ],
        "max_tokens": 1024,
    }
    features = features_of(request, 10)
    assert features.has_images and features.output_cap == 1024


def test_a_responses_request_shows_its_cap_images_json_mode_and_tools_to_the_classifier():
    request = {
        "model": "auto",
        "input": [
            {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA"}]}
        ],
        "max_output_tokens": 2_000,
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}},
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
    }
    features = features_of(request, 50)
    assert (features.output_cap, features.has_images, features.json_mode, features.has_tools) == (
        2_000,
        True,
        True,
        True,
    )
    assert not features_of({"model": "auto", "input": "hi"}, 5).json_mode
