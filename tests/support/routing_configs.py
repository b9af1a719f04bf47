"""Builders of small sealed configs (schema structs, no sealing) for routing tests."""

from __future__ import annotations

from sluicegate_contract.schema import (
    AutoRule,
    Candidate,
    Config,
    Fallback,
    KeyBinding,
    Model,
    ModelPrice,
    PriceTier,
    Provider,
    Rates,
    Tier,
)


def price(input_per_mtok: int, output_per_mtok: int, tiers: tuple[PriceTier, ...] = ()) -> ModelPrice:
    return ModelPrice(
        source="catalog",
        base=Rates(input_per_mtok=input_per_mtok, output_per_mtok=output_per_mtok),
        tiers=tiers,
    )


def model(name: str, alias: str | None = None, cost: ModelPrice | None = None) -> Model:
    return Model(name=name, alias=alias, price=cost)


def provider(name: str, kind: str, *models: Model) -> Provider:
    return Provider(
        name=name,
        provider=kind,  # type: ignore[arg-type]
        binding=KeyBinding(connection=name, uid=f"uid-{name}", generation=1),
        models=models,
    )


def tier(
    name: str,
    rank: int,
    *candidates: tuple[str, str] | tuple[str, str, int],
    strategy: str = "cheapest",
    auto: AutoRule | None = None,
    fallback: Fallback | None = None,
) -> Tier:
    return Tier(
        name=name,
        rank=rank,
        strategy=strategy,  # type: ignore[arg-type]
        candidates=tuple(
            Candidate(connection=c[0], model=c[1], weight=c[2] if len(c) == 3 else 1) for c in candidates
        ),
        fallback=fallback or Fallback(),
        auto=auto,
    )


def config(providers: tuple[Provider, ...], tiers: tuple[Tier, ...] = ()) -> Config:
    return Config(
        schema_version=1,
        namespace="team-a",
        serial=1,
        issued_at="2026-11-01T00:00:00Z",
        not_before="2026-11-01T00:00:00Z",
        not_after="2027-11-01T00:00:00Z",
        signing_key_id="k1",
        price_catalog_version="test",
        content_hash="0" * 64,
        providers=providers,
        tiers=tiers,
    )


def standard_config() -> Config:
    """Two OpenAI connections, one Anthropic, one unpriced local server; light/standard/premium tiers."""
    gpt4o = price(2_500_000, 10_000_000)
    return config(
        providers=(
            provider(
                "oai-main",
                "openai",
                model("gpt-4o", cost=gpt4o),
                model("gpt-4o-mini", alias="mini", cost=price(150_000, 600_000)),
            ),
            provider("oai-backup", "openai", model("gpt-4o", cost=gpt4o)),
            provider(
                "claude",
                "anthropic",
                model("claude-sonnet-4", cost=price(3_000_000, 15_000_000)),
                model("claude-haiku", cost=price(800_000, 4_000_000)),
            ),
            provider("local", "openai-compatible", model("llama-3"), model("meta-llama/Llama-3-70b")),
        ),
        tiers=(
            tier(
                "standard",
                10,
                ("oai-main", "gpt-4o"),
                ("oai-backup", "gpt-4o"),
                ("claude", "claude-sonnet-4"),
                auto=AutoRule(max_prompt_tokens=100_000),
            ),
            tier(
                "light",
                0,
                ("oai-main", "mini"),
                ("claude", "claude-haiku"),
                auto=AutoRule(max_prompt_tokens=4_000, max_output_tokens=1_000, allow_tools=False),
            ),
            tier("premium", 20, ("claude", "claude-sonnet-4")),
        ),
    )
