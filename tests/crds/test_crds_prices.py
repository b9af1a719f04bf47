"""Every example model is priced: by genai-prices under the right provider id, or by an override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from sluicegate_contract.pricecatalog import CATALOG_PROVIDER
from tests.support.crdvalidate import load_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "providerconnections.yaml"


def example_models() -> list[tuple[str, dict[str, Any]]]:
    return [
        (doc["spec"]["provider"], model)
        for doc in load_documents(EXAMPLES)
        for model in doc["spec"]["models"]
    ]


def catalog_models() -> list[tuple[str, str]]:
    return [(provider, model["name"]) for provider, model in example_models() if "pricing" not in model]


def generative_models() -> list[tuple[str, str]]:
    return [(provider, name) for provider, name in catalog_models() if "embed" not in name]


@pytest.mark.parametrize(("provider", "model"), generative_models(), ids=lambda v: str(v))
def test_example_model_without_override_is_priced_by_the_catalog(provider: str, model: str) -> None:
    price = calc_price(
        Usage(input_tokens=1_000_000, output_tokens=1_000_000), model, provider_id=CATALOG_PROVIDER[provider]
    )
    assert price.input_price > 0
    assert price.output_price > price.input_price


def test_catalog_priced_examples_cover_three_providers() -> None:
    assert {provider for provider, _ in catalog_models()} == {"openai", "anthropic", "gemini"}
    assert len(generative_models()) == 10


def test_the_example_embedding_model_has_an_input_price_in_the_catalog() -> None:
    embeddings = [name for _, name in catalog_models() if "embed" in name]
    assert embeddings == ["text-embedding-3-small"]
    price = calc_price(Usage(input_tokens=1_000_000, output_tokens=0), embeddings[0], provider_id="openai")
    assert price.input_price > 0


def test_every_model_on_a_provider_without_a_catalog_carries_pricing() -> None:
    uncatalogued = [model["name"] for provider, model in example_models() if provider not in CATALOG_PROVIDER]
    assert uncatalogued == ["mock-small", "mock-medium", "mock-large"]
    assert all("pricing" in model for provider, model in example_models() if provider not in CATALOG_PROVIDER)


@pytest.mark.parametrize("model", ["mock-small", "mock-medium", "mock-large"])
def test_mock_models_are_unknown_to_the_catalog_so_their_override_is_needed(model: str) -> None:
    with pytest.raises(LookupError):
        calc_price(Usage(input_tokens=1, output_tokens=1), model)
