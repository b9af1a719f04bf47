"""LiteLLM proxy config.yaml → Sluicegate resources: valid, renderable, keys never copied."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from sluicegate_contract.keyring import new_data_ring, new_signing_ring
from sluicegate_operator.connections import secrets_from_objects
from sluicegate_operator.importers.emit import to_yaml
from sluicegate_operator.importers.litellm import import_litellm
from sluicegate_operator.render import render_namespace
from tests.support.crdvalidate import load_crds, validate

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = Path(__file__).with_name("data") / "litellm-config.yaml"
CRDS = load_crds(ROOT / "crds")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRETS_IN_SAMPLE = ("AIza-INLINE-SECRET", "MASTER-SECRET", "DB-SECRET", "ENV-SECRET", "sk-1234")


def sample() -> dict:
    return yaml.safe_load(SAMPLE.read_text())


def of_kind(result, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in result.objects if o["kind"] == kind}


def dropped_text(result) -> str:
    return "\n".join(f"{d.where}: {d.what} — {d.why}" for d in result.dropped)


def candidates(tier: dict) -> list[tuple[str, str]]:
    return [(c["connection"], c["model"]) for c in tier["spec"]["candidates"]]


def test_sample_config_imports_to_resources_the_crds_accept_and_render_seals() -> None:
    result = import_litellm(sample(), namespace="team-a")
    objects = [o for o in yaml.safe_load_all(to_yaml(result, "sluicegate import litellm-config c.yaml")) if o]
    assert objects == result.objects
    for obj in objects:
        assert obj["metadata"]["namespace"] == "team-a"
        if obj["kind"] != "Secret":
            assert validate(obj, CRDS) == [], obj["metadata"]["name"]
    signing, data = new_signing_ring(), new_data_ring()
    rendered = render_namespace(
        "team-a", objects, secrets_from_objects(objects),
        data_key=data.active, signing_key=signing.active, serial=1, now=NOW,
    )  # fmt: skip
    assert [r for r in rendered.reports.values() if not r.ready or r.not_ready] == []
    assert {t.name for t in rendered.config.tiers} == {
        "gpt-4o",
        "claude-sonnet",
        "cheap",
        "local-llama",
        "gpt-4",
        "llama-together",  # model ids with '/' are declared as is (issue 15)
    }
    assert [b.name for b in rendered.config.budgets] == ["litellm-max-budget"]


def test_a_group_of_deployments_becomes_a_weighted_tier_by_weight() -> None:
    cheap = of_kind(import_litellm(sample()), "RoutingTier")["cheap"]
    assert cheap["spec"]["strategy"] == "weighted"
    assert [(c["connection"], c["weight"]) for c in cheap["spec"]["candidates"]] == [
        ("openai", 2), ("groq", 1), ("gemini", 1),
    ]  # fmt: skip
    assert cheap["spec"]["fallback"]["maxRetries"] == 2


def test_a_group_with_fallbacks_tries_its_deployments_by_rpm_then_the_fallback_group() -> None:
    result = import_litellm(sample())
    tiers = of_kind(result, "RoutingTier")
    assert tiers["gpt-4o"]["spec"]["strategy"] == "ordered"
    assert candidates(tiers["gpt-4o"]) == [
        ("azure-eu", "gpt-4o"),  # rpm 600
        ("azure-us", "gpt-4o"),  # rpm 300
        ("openai", "gpt-4o"),  # rpm 100
        ("anthropic", "claude-sonnet-4-6"),  # fallbacks: gpt-4o → claude-sonnet
    ]
    assert candidates(tiers["claude-sonnet"])[0] == ("anthropic", "claude-sonnet-4-6")
    assert candidates(tiers["gpt-4"]) == candidates(tiers["gpt-4o"])  # model_group_alias
    assert "load balancing inside a group that has fallbacks" in dropped_text(result)
    assert "unknown group 'nonexistent'" in dropped_text(result)


def test_azure_deployments_become_azure_connections_named_after_their_key_variables() -> None:
    result = import_litellm(sample())
    eu = of_kind(result, "ProviderConnection")["azure-eu"]["spec"]
    assert eu["provider"] == "azure-openai"
    assert eu["baseURL"] == "https://acme-eu.openai.azure.com"
    assert eu["azure"] == {"apiVersion": "2024-10-21", "deployments": {"gpt-4o": "gpt-4o-eu"}}
    assert eu["models"] == [{"name": "gpt-4o"}]  # model_info.base_model, not the deployment name
    assert any("$AZURE_API_VERSION" in step for step in result.todo)


def test_key_references_become_secret_stubs_naming_the_variable_and_no_secret_is_copied() -> None:
    result = import_litellm(sample())
    printed = to_yaml(result, "sluicegate import litellm-config c.yaml")
    for secret in SECRETS_IN_SAMPLE:
        assert secret not in printed
    assert 'kubectl create secret generic azure-eu-key --from-literal=apiKey="$AZURE_API_KEY_EU"' in printed
    stubs = of_kind(result, "Secret")
    assert {s["stringData"]["apiKey"] for s in stubs.values()} == {"REPLACE-ME"}
    assert "an api_key written in the LiteLLM config at model_list[6] (not copied)" in printed
    assert "LANGFUSE_SECRET_KEY" in dropped_text(result)  # named, value withheld
    assert "master_key" in dropped_text(result)


def test_per_token_costs_become_price_overrides_per_million_tokens() -> None:
    vllm = of_kind(import_litellm(sample()), "ProviderConnection")["hosted-vllm"]["spec"]
    assert vllm["provider"] == "openai-compatible"
    assert vllm["baseURL"] == "http://vllm.models.svc:8000/v1"
    assert vllm["models"] == [
        {"name": "llama-3.1-70b", "pricing": {"inputPerMTok": 0.2, "outputPerMTok": 0.6}}
    ]


def test_max_budget_over_30_days_becomes_a_monthly_blocking_policy() -> None:
    budget = of_kind(import_litellm(sample()), "BudgetPolicy")["litellm-max-budget"]
    assert budget["spec"] == {
        "limits": [{"window": "month", "amountUSD": 250.0, "timezone": "UTC"}],
        "action": "BLOCK",
    }


def test_a_budget_sluicegate_cannot_window_is_listed_not_guessed() -> None:
    config = {**sample(), "litellm_settings": {"max_budget": 10, "budget_duration": "2d"}}
    result = import_litellm(config)
    assert of_kind(result, "BudgetPolicy") == {}
    assert "a budget over '2d'" in dropped_text(result)
    assert "calendar windows only" in dropped_text(result)


def test_providers_and_model_names_sluicegate_cannot_serve_are_listed_with_reasons() -> None:
    text = dropped_text(import_litellm(sample()))
    assert "model_list[8]: provider 'bedrock'" in text
    assert "together_ai/meta-llama" not in text  # model ids with '/' are carried over (issue 15)
    assert "rpm limit" in text and "does not rate-limit" in text
    assert "context_window_fallbacks" in text
    assert "max_end_user_budget" in text


def test_a_group_named_like_a_model_explains_what_a_bare_name_gets() -> None:
    result = import_litellm(sample())
    assert any("'gpt-4o' is offered by 3 connections" in s and "tier:gpt-4o" in s for s in result.todo)


def test_cost_based_routing_becomes_the_cheapest_strategy() -> None:
    config = {**sample(), "router_settings": {"routing_strategy": "cost-based-routing"}}
    tiers = of_kind(import_litellm(config), "RoutingTier")
    assert tiers["cheap"]["spec"]["strategy"] == "cheapest"
    assert "weight" not in tiers["cheap"]["spec"]["candidates"][0]


def test_latency_based_routing_is_listed_and_falls_back_to_weights() -> None:
    config = {**sample(), "router_settings": {"routing_strategy": "latency-based-routing"}}
    result = import_litellm(config)
    assert of_kind(result, "RoutingTier")["cheap"]["spec"]["strategy"] == "weighted"
    assert "latency-based-routing" in dropped_text(result)


def test_default_fallbacks_extend_every_group_without_its_own() -> None:
    config = {
        "model_list": [
            {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini"}},
            {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-sonnet-4-6"}},
        ],
        "litellm_settings": {"default_fallbacks": ["smart"]},
    }
    tiers = of_kind(import_litellm(config), "RoutingTier")
    assert candidates(tiers["fast"]) == [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6")]
    assert candidates(tiers["smart"]) == [("anthropic", "claude-sonnet-4-6")]
