"""Portkey config → Sluicegate resources: valid against the CRDs, rendered, and honest about drops."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from sluicegate_contract.keyring import new_data_ring, new_signing_ring
from sluicegate_operator.connections import secrets_from_objects
from sluicegate_operator.importers.emit import to_yaml
from sluicegate_operator.importers.portkey import import_portkey
from sluicegate_operator.render import render_namespace
from tests.support.crdvalidate import load_crds, validate

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(__file__).with_name("data")
CRDS = load_crds(ROOT / "crds")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SAMPLES = sorted(DATA.glob("portkey-*.json"))


def load(name: str) -> dict:
    data = json.loads((DATA / name).read_text())
    return data["data"]["config"] if "data" in data else data


def of_kind(result, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in result.objects if o["kind"] == kind}


def dropped_text(result) -> str:
    return "\n".join(f"{d.where}: {d.what} — {d.why}" for d in result.dropped)


def assert_valid_and_renderable(result) -> None:
    """What `kubectl apply` and the operator would do with the output: accept and seal all of it."""
    objects = yaml.safe_load_all(to_yaml(result, "sluicegate import portkey-config test.json"))
    objects = [o for o in objects if o]
    assert objects == result.objects  # the printed YAML is exactly the resources
    for obj in objects:
        if obj["kind"] != "Secret":
            assert validate(obj, CRDS) == [], obj["metadata"]["name"]
    signing, data = new_signing_ring(), new_data_ring()
    rendered = render_namespace(
        "shop", objects, secrets_from_objects(objects),
        data_key=data.active, signing_key=signing.active, serial=1, now=NOW,
    )  # fmt: skip
    assert [r for r in rendered.reports.values() if not r.ready or r.not_ready] == []
    assert {t.name for t in rendered.config.tiers} == set(of_kind(result, "RoutingTier"))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_config_imports_to_resources_the_crds_accept_and_render_seals(sample: Path) -> None:
    result = import_portkey(load(sample.name), tier=sample.stem, default_model="gpt-4o-mini")
    assert of_kind(result, "RoutingTier")
    assert_valid_and_renderable(result)


def test_fallback_with_a_nested_loadbalance_tries_the_heavier_target_first_and_says_so() -> None:
    result = import_portkey(load("portkey-fallback-nested-loadbalance.json"), tier="chat")
    tier = of_kind(result, "RoutingTier")["chat"]["spec"]
    assert tier["strategy"] == "ordered"
    assert [(c["connection"], c["model"]) for c in tier["candidates"]] == [
        ("openai-prod-4a1f", "gpt-4o"),  # weight 0.7
        ("azure-eu-77c2", "gpt-4o"),  # weight 0.3
        ("anthropic", "claude-sonnet-4-6"),
    ]
    assert tier["fallback"] == {"maxRetries": 2, "retryOn": ["429", "5xx", "timeout", "connect"]}
    text = dropped_text(result)
    assert "load balancing nested inside a fallback" in text
    assert "provider 'bedrock'" in text and "no adapter" in text
    assert "3 retries of the same target" in text
    assert "config.cache" in text
    assert "max_tokens, temperature" in text  # override_params beyond model


def test_azure_target_becomes_an_azure_connection_with_its_deployment_and_timeout() -> None:
    result = import_portkey(load("portkey-fallback-nested-loadbalance.json"), tier="chat")
    azure = of_kind(result, "ProviderConnection")["azure-eu-77c2"]["spec"]
    assert azure["provider"] == "azure-openai"
    assert azure["baseURL"] == "https://acme-eu.openai.azure.com"
    assert azure["azure"] == {"apiVersion": "2024-10-21", "deployments": {"gpt-4o": "gpt4o-eu"}}
    assert azure["timeouts"] == {"totalSeconds": 30.0}  # request_timeout 30000 ms, inherited


def test_loadbalance_over_nested_strategies_keeps_the_traffic_shares() -> None:
    result = import_portkey(load("portkey-loadbalance-nested-fallback.json"), tier="mix")
    tier = of_kind(result, "RoutingTier")["mix"]["spec"]
    weights = {c["connection"]: c["weight"] for c in tier["candidates"]}
    # 3:1 between the groups; the inner 1:1 split; the fallback's backup only serves on failure.
    assert weights["openai-team-a"] == 6 * weights["gemini-main"]
    assert weights["gemini-main"] == weights["mistral-main"]
    assert weights["groq-main"] == 1
    assert tier["strategy"] == "weighted"
    assert "gpt-4.1-nano" not in json.dumps(result.objects)  # weight 0: never received traffic
    text = dropped_text(result)
    assert "a target with weight 0" in text
    assert "status 401" in text and "never falls back on a 4xx" in text
    assert "input_guardrails" in text


def test_camel_case_keys_are_read_like_snake_case() -> None:
    snake = import_portkey(load("portkey-loadbalance-nested-fallback.json"), tier="mix")
    assert {c["metadata"]["name"] for c in of_kind(snake, "ProviderConnection").values()} == {
        "openai-team-a", "groq-main", "gemini-main", "mistral-main",
    }  # fmt: skip
    assert of_kind(snake, "ProviderConnection")["gemini-main"]["spec"]["provider"] == "gemini"


def test_conditional_branches_become_tiers_the_app_picks_by_name() -> None:
    result = import_portkey(load("portkey-conditional.json"), tier="router")
    tiers = of_kind(result, "RoutingTier")
    assert set(tiers) == {"router", "router-smart-fallback"}  # default branch takes the base name
    assert tiers["router"]["spec"]["strategy"] == "weighted"
    smart = tiers["router-smart-fallback"]["spec"]
    assert [c["connection"] for c in smart["candidates"]] == ["openai-prod", "anthropic-prod", "ollama"]
    assert any("by model 'fast'" in step and "tier:router" in step for step in result.todo)
    assert "metadata or parameters" in dropped_text(result)
    ollama = of_kind(result, "ProviderConnection")["ollama"]["spec"]
    assert ollama == {
        **ollama,
        "provider": "openai-compatible",
        "baseURL": "http://ollama.models.svc:11434/v1",
    }


def test_model_catalog_slugs_become_connections_named_after_them() -> None:
    result = import_portkey(load("portkey-conditional.json"), tier="router")
    connections = of_kind(result, "ProviderConnection")
    assert connections["openai-prod"]["spec"]["provider"] == "openai"
    assert connections["anthropic-prod"]["spec"]["provider"] == "anthropic"
    assert [m["name"] for m in connections["anthropic-prod"]["spec"]["models"]] == [
        "claude-haiku-4-5", "claude-sonnet-4-6",
    ]  # fmt: skip


def test_inline_api_key_never_reaches_the_output() -> None:
    config = load("portkey-single-inline-key.json")
    result = import_portkey(config, tier="t")
    printed = to_yaml(result, "sluicegate import portkey-config x.json")
    assert config["api_key"] not in printed
    assert "INLINE-SECRET" not in printed
    secret = of_kind(result, "Secret")["openai-key"]
    assert secret["stringData"] == {"apiKey": "REPLACE-ME"}
    assert "(not copied)" in printed


def test_target_without_a_model_is_listed_unless_a_default_model_is_given() -> None:
    config = load("portkey-virtual-keys-without-model.json")
    without = import_portkey(config, tier="t")
    assert "a target without override_params.model" in dropped_text(without)
    assert set(of_kind(without, "ProviderConnection")) == {"azure-test-4110dd"}  # deployment names it
    given = import_portkey(config, tier="t", default_model="gpt-4o-mini")
    tier = of_kind(given, "RoutingTier")["t"]["spec"]
    assert [(c["connection"], c["model"]) for c in tier["candidates"]] == [
        ("main-258f4d", "gpt-4o-mini"), ("azure-test-4110dd", "gpt-4o-mini"),
    ]  # fmt: skip


def test_virtual_key_without_a_provider_is_guessed_from_its_name_or_listed() -> None:
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"virtual_key": "anthropic-main-12ab", "override_params": {"model": "claude-haiku-4-5"}},
            {"virtual_key": "vk-9f8e7d", "override_params": {"model": "gpt-4o"}},
        ],
    }
    result = import_portkey(config, tier="t")
    assert of_kind(result, "ProviderConnection")["anthropic-main-12ab"]["spec"]["provider"] == "anthropic"
    assert "virtual key 'vk-9f8e7d'" in dropped_text(result)
    assert 'add "provider"' in dropped_text(result)


def test_retry_status_codes_map_to_retry_classes() -> None:
    config = {
        "strategy": {"mode": "fallback", "on_status_codes": [429]},
        "targets": [
            {"provider": "openai", "virtual_key": "a", "override_params": {"model": "gpt-4o"}},
            {"provider": "openai", "virtual_key": "b", "override_params": {"model": "gpt-4o"}},
        ],
    }
    tier = of_kind(import_portkey(config, tier="t"), "RoutingTier")["t"]["spec"]
    assert tier["fallback"]["retryOn"] == ["429", "timeout", "connect"]  # no 5xx: Portkey did not


def test_model_ids_with_a_slash_are_carried_over_except_where_they_would_enter_a_url() -> None:
    config = {
        "provider": "together-ai",
        "api_key": "k",
        "override_params": {"model": "meta-llama/Llama-3-70b"},
    }
    connection = of_kind(import_portkey(config, tier="t"), "ProviderConnection")
    assert [m["name"] for c in connection.values() for m in c["spec"]["models"]] == ["meta-llama/Llama-3-70b"]
    google = {"provider": "google", "api_key": "k", "override_params": {"model": "models/gemini-2.5-flash"}}
    result = import_portkey(google, tier="t")
    assert result.resources == ()
    assert "a gemini model name may not contain '/'" in dropped_text(result)


def test_the_printed_yaml_lists_the_drops_and_the_steps_before_applying() -> None:
    result = import_portkey(load("portkey-fallback-nested-loadbalance.json"), tier="chat")
    printed = to_yaml(result, "sluicegate import portkey-config f.json")
    head = printed.split("\n---\n", 1)[0]
    assert head.startswith("# Generated by `sluicegate import portkey-config f.json`")
    assert "# Before applying:" in head and "tier:chat" in head
    assert "# Not carried over (" in head and "bedrock" in head
    assert "applying a stub over an existing Secret replaces its key" in re.sub(r"\s*\n#\s*", " ", head)
    assert all(line.startswith("#") for line in head.splitlines())


def test_malformed_configs_are_listed_not_crashed_on() -> None:
    for config in (
        {"strategy": {"mode": "fallback"}, "targets": ["not-an-object"]},
        {"strategy": {"mode": "conditional"}, "targets": []},
        {
            "strategy": {"mode": "loadbalance"},
            "targets": [{"weight": "heavy", "provider": "openai", "api_key": "k"}],
        },
        {},
    ):
        result = import_portkey(config, tier="t")
        assert of_kind(result, "RoutingTier") == {} or result.dropped
