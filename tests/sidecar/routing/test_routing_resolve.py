"""Model resolution and the GET /v1/models listing."""

from __future__ import annotations

import pytest

from sluicegate_contract.schema import AutoRule
from sluicegate_sidecar.routing.autotier import RequestFeatures
from sluicegate_sidecar.routing.catalog import ModelCatalog
from sluicegate_sidecar.routing.resolve import InvalidModel, UnknownModel, resolve
from tests.support.routing_configs import config, model, price, provider, standard_config, tier

SMALL = RequestFeatures(prompt_tokens=100)


def small() -> RequestFeatures:
    return SMALL


@pytest.fixture
def catalog() -> ModelCatalog:
    return ModelCatalog.from_config(standard_config())


def pairs(resolution):
    return [(t.connection, t.model) for t in resolution.candidates]


def test_connection_slash_model_is_pinned_to_that_connection(catalog):
    r = resolve("oai-backup/gpt-4o", catalog, small)
    assert (r.kind, r.pinned, r.tier) == ("pinned", True, None)
    assert pairs(r) == [("oai-backup", "gpt-4o")]


def test_alias_resolves_to_the_providers_model_name(catalog):
    r = resolve("oai-main/mini", catalog, small)
    assert pairs(r) == [("oai-main", "gpt-4o-mini")]
    assert r.candidates[0].spec.alias == "mini"


def test_provider_kind_slash_model_pins_the_model_across_every_connection_of_that_kind(catalog):
    r = resolve("openai/gpt-4o", catalog, small)
    assert r.pinned
    assert pairs(r) == [("oai-main", "gpt-4o"), ("oai-backup", "gpt-4o")]
    assert {t.model for t in r.candidates} == {"gpt-4o"}


def test_connection_name_wins_over_a_provider_kind_of_the_same_name():
    cfg = config(
        providers=(
            provider("openai", "openai", model("gpt-4o")),
            provider("other", "openai", model("gpt-4o")),
        )
    )
    r = resolve("openai/gpt-4o", ModelCatalog.from_config(cfg), small)
    assert pairs(r) == [("openai", "gpt-4o")]


def test_unique_bare_name_is_pinned_to_its_only_connection(catalog):
    r = resolve("claude-haiku", catalog, small)
    assert (r.kind, r.pinned) == ("pinned", True)
    assert pairs(r) == [("claude", "claude-haiku")]
    assert resolve("mini", catalog, small).candidates[0].model == "gpt-4o-mini"


def test_bare_name_offered_by_two_connections_is_404_asking_for_a_connection(catalog):
    with pytest.raises(UnknownModel) as caught:
        resolve("gpt-4o", catalog, small)
    assert caught.value.status == 404
    assert "<connection>/gpt-4o" in str(caught.value)
    assert "oai-main" not in str(caught.value)


def test_provider_model_names_with_a_slash_resolve_as_bare_names(catalog):
    r = resolve("meta-llama/Llama-3-70b", catalog, small)
    assert pairs(r) == [("local", "meta-llama/Llama-3-70b")]


def test_tier_prefix_resolves_to_the_tier_with_its_strategy_and_fallback(catalog):
    r = resolve("tier:standard", catalog, small)
    assert (r.kind, r.tier, r.pinned, r.strategy) == ("tier", "standard", False, "cheapest")
    assert pairs(r) == [("oai-main", "gpt-4o"), ("oai-backup", "gpt-4o"), ("claude", "claude-sonnet-4")]
    assert r.fallback.max_retries == 2


def test_tier_candidates_named_by_alias_carry_the_providers_model_name(catalog):
    assert pairs(resolve("tier:light", catalog, small)) == [
        ("oai-main", "gpt-4o-mini"),
        ("claude", "claude-haiku"),
    ]


def test_bare_tier_name_resolves_to_the_tier_when_no_model_has_that_name(catalog):
    r = resolve("premium", catalog, small)
    assert (r.kind, r.tier) == ("tier", "premium")


def test_model_names_win_over_tier_names_for_bare_names():
    cfg = config(
        providers=(provider("p", "openai", model("light"), model("gpt-4o-mini")),),
        tiers=(tier("light", 0, ("p", "gpt-4o-mini")),),
    )
    catalog = ModelCatalog.from_config(cfg)
    assert pairs(resolve("light", catalog, small)) == [("p", "light")]
    assert pairs(resolve("tier:light", catalog, small)) == [("p", "gpt-4o-mini")]


def test_auto_picks_a_tier_and_explains_why(catalog):
    r = resolve("auto", catalog, lambda: RequestFeatures(prompt_tokens=1_234))
    assert (r.kind, r.tier, r.pinned) == ("auto", "light", False)
    assert r.reason == "auto: 1,234 prompt tokens <= 4,000, no tools -> light"
    heavy = resolve("auto", catalog, lambda: RequestFeatures(prompt_tokens=1_234, has_tools=True))
    assert heavy.tier == "standard"


def test_auto_honours_the_tier_hint(catalog):
    r = resolve("auto", catalog, lambda: RequestFeatures(prompt_tokens=10), hint="standard")
    assert r.tier == "standard"


def test_auto_is_unknown_when_no_tier_accepts_it():
    cfg = config(providers=(provider("p", "openai", model("m")),), tiers=(tier("t", 0, ("p", "m")),))
    with pytest.raises(UnknownModel):
        resolve("auto", ModelCatalog.from_config(cfg), small)


@pytest.mark.parametrize(
    "name",
    [
        "nope",
        "oai-main/nope",
        "openai/claude-haiku",
        "nowhere/gpt-4o",
        "tier:nope",
        "tier:",
        "mistral/mistral-large",
    ],
)
def test_unknown_model_is_rejected_with_404_naming_only_what_was_sent(catalog, name):
    with pytest.raises(UnknownModel) as caught:
        resolve(name, catalog, small)
    assert caught.value.status == 404
    assert caught.value.code == "model_not_found"
    message = str(caught.value)
    assert f"'{name}'" in message
    for secret_ish in ("oai-main", "oai-backup", "claude", "local", "uid-"):
        if secret_ish not in name:
            assert secret_ish not in message


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "..",
        "a//b",
        "a/b/",
        "x#y",
        "gpt-4o?x=1",
        "%2e%2e",
        "gpt 4o",
        "gpt-4o\n",
        "gpt\x00-4o",
        "gpt\x1b[31m",
        "gpt-4ö",
        "",
        "/gpt-4o",
        "openai/",
        "a" * 257,
        "oai-main/..",
    ],
)
def test_invalid_model_names_are_rejected_with_400_without_echoing_them(catalog, name):
    with pytest.raises(InvalidModel) as caught:
        resolve(name, catalog, small)
    assert caught.value.status == 400
    if len(name) > 2:
        assert name not in str(caught.value)


def test_non_string_model_is_invalid(catalog):
    with pytest.raises(InvalidModel):
        resolve(42, catalog, small)  # type: ignore[arg-type]


def test_a_256_character_name_is_checked_against_the_config_not_refused_as_invalid(catalog):
    with pytest.raises(UnknownModel):
        resolve("a" * 256, catalog, small)


def test_models_on_unusable_connections_resolve_but_with_no_candidates():
    catalog = ModelCatalog.from_config(standard_config(), usable=lambda conn: conn != "claude")
    assert resolve("claude/claude-haiku", catalog, small).candidates == ()
    assert pairs(resolve("tier:standard", catalog, small)) == [
        ("oai-main", "gpt-4o"),
        ("oai-backup", "gpt-4o"),
    ]
    assert resolve("tier:premium", catalog, small).candidates == ()


def test_auto_skips_a_tier_whose_candidates_are_all_unusable():
    cfg = config(
        providers=(provider("a", "openai", model("small")), provider("b", "openai", model("big"))),
        tiers=(
            tier("light", 0, ("a", "small"), auto=AutoRule()),
            tier("heavy", 1, ("b", "big"), auto=AutoRule()),
        ),
    )
    catalog = ModelCatalog.from_config(cfg, usable=lambda conn: conn != "a")
    assert resolve("auto", catalog, small).tier == "heavy"


def test_tier_candidates_naming_missing_models_or_connections_are_dropped():
    cfg = config(
        providers=(provider("p", "openai", model("m", cost=price(1, 1))),),
        tiers=(tier("t", 0, ("p", "m"), ("p", "gone"), ("ghost", "m"), ("p", "m")),),
    )
    catalog = ModelCatalog.from_config(cfg)
    assert pairs(resolve("tier:t", catalog, small)) == [("p", "m")]
    assert len(catalog.tier("t").candidates) == 1


def test_listing_offers_auto_tiers_pinned_and_unique_bare_names(catalog):
    ids = [entry["id"] for entry in catalog.listing()]
    assert ids[:4] == ["auto", "tier:light", "tier:standard", "tier:premium"]
    for expected in (
        "oai-main/gpt-4o",
        "oai-main/gpt-4o-mini",
        "oai-main/mini",
        "oai-backup/gpt-4o",
        "claude/claude-haiku",
        "local/llama-3",
        "claude-haiku",
        "mini",
        "meta-llama/Llama-3-70b",
    ):
        assert expected in ids
    assert "gpt-4o" not in ids  # ambiguous
    assert "local/meta-llama/Llama-3-70b" in ids  # model ids may hold '/' (issue 15)
    assert len(ids) == len(set(ids))
    for entry in catalog.listing():
        assert set(entry) == {"id", "object", "created", "owned_by"}
        assert entry["object"] == "model" and entry["created"] == 0
        resolve(entry["id"], catalog, small)  # everything listed resolves


def test_listing_names_the_provider_kind_as_owner_and_hides_unusable_connections():
    catalog = ModelCatalog.from_config(standard_config(), usable=lambda conn: conn != "claude")
    listing = {entry["id"]: entry for entry in catalog.listing()}
    assert listing["oai-main/gpt-4o"]["owned_by"] == "openai"
    assert listing["auto"]["owned_by"] == "sluicegate"
    assert not any("claude" in model_id for model_id in listing)
    assert "tier:premium" not in listing


def test_listing_leaves_out_auto_when_no_tier_accepts_it():
    cfg = config(providers=(provider("p", "openai", model("m")),), tiers=(tier("t", 0, ("p", "m")),))
    ids = [entry["id"] for entry in ModelCatalog.from_config(cfg).listing()]
    assert ids == ["tier:t", "p/m", "m"]


def test_lighter_tiers_are_those_below_a_rank_lightest_first(catalog):
    assert [t.name for t in catalog.lighter_tiers(20)] == ["light", "standard"]
    assert [t.name for t in catalog.lighter_tiers(0)] == []
    assert [t.name for t in catalog.tiers_by_rank()] == ["light", "standard", "premium"]


def test_a_name_resolves_the_same_every_time_and_auto_still_follows_each_request(catalog):
    for name in ("oai-backup/gpt-4o", "openai/gpt-4o", "tier:light", "oai-main/mini"):
        assert resolve(name, catalog, small) == resolve(name, catalog, small)
    with pytest.raises(UnknownModel):
        resolve("no-such-model", catalog, small)
    with pytest.raises(UnknownModel):  # a refusal is not remembered as anything else
        resolve("no-such-model", catalog, small)
    light = resolve("auto", catalog, small)
    large = resolve("auto", catalog, lambda: RequestFeatures(prompt_tokens=500_000))
    assert (light.kind, large.kind) == ("auto", "auto")
    assert light.tier != large.tier or light.reason != large.reason


def test_a_named_model_never_reads_the_requests_features(catalog):
    def unread() -> RequestFeatures:
        raise AssertionError("features read for a named model")

    for name in ("oai-backup/gpt-4o", "openai/gpt-4o", "tier:light", "oai-main/mini", "mini"):
        assert resolve(name, catalog, unread).candidates
