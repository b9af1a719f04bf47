"""Render: examples → sealed config; strict parsing; failures that degrade only what is broken."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import yaml

from sluicegate_cli.main import main as cli
from sluicegate_contract.keyring import new_data_ring, new_signing_ring
from sluicegate_contract.sealing import verify_config
from sluicegate_operator.connections import secrets_from_objects
from sluicegate_operator.crparse import ResourceError
from sluicegate_operator.render import RenderError, render_namespace
from sluicegate_operator.render_cli import load_objects

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).with_name("golden_examples.json")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def render(objects, **kwargs):
    signing, data = new_signing_ring(), new_data_ring()
    result = render_namespace(
        "shop",
        objects,
        secrets_from_objects(objects),
        data_key=data.active,
        signing_key=signing.active,
        serial=kwargs.pop("serial", 1),
        now=NOW,
        **kwargs,
    )
    return result, signing, data


def stable_view(config) -> dict:
    """The config minus what differs run to run (keys, nonces, ids derived from keys)."""
    doc = msgspec.to_builtins(config)
    for field in ("signingKeyId", "contentHash", "priceCatalogVersion"):
        doc.pop(field)
    for provider in doc["providers"]:
        if provider.get("apiKey"):
            provider["apiKey"] = "<sealed>"
    return json.loads(json.dumps(doc))


def test_examples_render_to_the_golden_config() -> None:
    result, signing, _ = render(load_objects([str(EXAMPLES)]))
    verify_config(result.config_json, result.config_sig, signing.public_keys(), namespace="shop", now=NOW)
    got = stable_view(result.config)
    if not GOLDEN.exists():  # first run writes the golden file for review
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_catalog_prices_reach_the_config_and_overrides_win() -> None:
    result, _, _ = render(load_objects([str(EXAMPLES)]))
    models = {(p.name, m.name): m for p in result.config.providers for m in p.models}
    nano = models[("openai", "gpt-4.1-nano")].price
    assert nano is not None and nano.source == "catalog"
    assert (nano.base.input_per_mtok, nano.base.output_per_mtok) == (100_000, 400_000)
    small = models[("mock", "mock-small")].price
    assert small is not None and small.source == "override"
    assert (small.base.input_per_mtok, small.base.output_per_mtok) == (100_000, 400_000)
    pro = models[("gemini", "gemini-2.5-pro")].price
    assert pro is not None and pro.tiers and pro.tiers[0].above_input_tokens == 200_000


def test_raw_keys_never_appear_in_anything_render_writes(tmp_path: Path) -> None:
    raw_keys = [
        v
        for doc in yaml.safe_load_all((EXAMPLES / "secrets.yaml").read_text())
        if doc
        for v in (doc.get("stringData") or {}).values()
    ]
    assert len(raw_keys) >= 3
    out = tmp_path / "cfg"
    assert cli(["render", "-f", str(EXAMPLES), "-o", str(out)]) == 0
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "config.json" for p in written)
    for path in written:
        content = path.read_bytes()
        for raw in raw_keys:
            assert raw.encode() not in content, f"{raw!r} leaked into {path}"


def test_second_render_keeps_the_keys_and_raises_the_serial(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cfg"
    assert cli(["render", "-f", str(EXAMPLES), "-o", str(out)]) == 0
    signing_before = (out / "keys" / "signing-keys.json").read_bytes()
    assert cli(["render", "-f", str(EXAMPLES), "-o", str(out)]) == 0
    assert (out / "keys" / "signing-keys.json").read_bytes() == signing_before
    assert json.loads((out / "config.json").read_bytes())["serial"] == 2
    assert cli(["config", "verify", str(out)]) == 0
    assert "serial 2" in capsys.readouterr().out


def test_config_verify_names_the_reason_for_a_tampered_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cfg"
    assert cli(["render", "-f", str(EXAMPLES), "-o", str(out)]) == 0
    target = (out / "config.json").resolve()
    target.write_bytes(target.read_bytes().replace(b'"serial":1', b'"serial":7'))
    assert cli(["config", "verify", str(out)]) == 1
    assert "bad_signature" in capsys.readouterr().err


def test_config_show_redacts_every_key(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cfg"
    assert cli(["render", "-f", str(EXAMPLES), "-o", str(out)]) == 0
    capsys.readouterr()
    assert cli(["config", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "redacted" in shown and "ciphertext" not in shown


def test_a_missing_secret_degrades_only_its_connection() -> None:
    objects = [o for o in load_objects([str(EXAMPLES)]) if o["metadata"]["name"] != "openai-key"]
    result, _, _ = render(objects)
    names = {p.name for p in result.config.providers}
    assert "openai" not in names and {"anthropic", "gemini", "mock"} <= names
    report = result.reports[("ProviderConnection", "openai")]
    assert not report.ready and report.reason == "SecretNotFound"
    light = next(t for t in result.config.tiers if t.name == "light")
    assert all(c.connection != "openai" for c in light.candidates)
    assert "openai/gpt-4.1-nano" in result.reports[("RoutingTier", "light")].not_ready


def test_an_unknown_field_is_an_error_naming_the_resource_and_path() -> None:
    objects = load_objects([str(EXAMPLES)])
    tier = next(o for o in objects if o["kind"] == "RoutingTier")
    tier["spec"]["colour"] = "blue"
    result, _, _ = render(objects)
    report = result.reports[("RoutingTier", tier["metadata"]["name"])]
    assert not report.ready and "colour" in report.message and "spec" in report.message


def test_a_broken_budget_fails_the_render_closed() -> None:
    objects = load_objects([str(EXAMPLES)])
    budget = next(o for o in objects if o["kind"] == "BudgetPolicy")
    budget["spec"]["limits"][0]["amountUSD"] = "lots"
    with pytest.raises(RenderError, match=budget["metadata"]["name"]):
        render(objects)


def test_wrong_types_name_the_field_path() -> None:
    objects = load_objects([str(EXAMPLES)])
    conn = next(o for o in objects if o["kind"] == "ProviderConnection" and o["metadata"]["name"] == "mock")
    conn["spec"]["models"][0]["contextWindow"] = "big"
    result, _, _ = render(objects)
    report = result.reports[("ProviderConnection", "mock")]
    assert not report.ready and "spec.models[0].contextWindow" in report.message


def test_offline_render_serves_every_connection_from_the_mock_provider() -> None:
    result, _, _ = render(load_objects([str(EXAMPLES)]), offline=True)
    assert {p.provider for p in result.config.providers} == {"mock"}
    assert all(p.api_key is None for p in result.config.providers)
    openai = next(p for p in result.config.providers if p.name == "openai")
    assert openai.models[0].price is not None and openai.models[0].price.source == "catalog"


def test_unchanged_inputs_give_the_same_content_hash_and_a_changed_key_does_not() -> None:
    objects = load_objects([str(EXAMPLES)])
    signing, data = new_signing_ring(), new_data_ring()

    def once(objs, serial):
        return render_namespace(
            "shop",
            objs,
            secrets_from_objects(objs),
            data_key=data.active,
            signing_key=signing.active,
            serial=serial,
            now=NOW,
        )

    first, second = once(objects, 1), once(objects, 2)
    assert first.content_hash == second.content_hash
    assert first.config_json != second.config_json  # fresh nonces, new serial
    secret = next(o for o in objects if o["metadata"]["name"] == "openai-key")
    secret["stringData"]["apiKey"] = "sk-rotated"
    assert once(objects, 3).content_hash != first.content_hash


def test_a_secret_with_bad_base64_is_named() -> None:
    with pytest.raises(ResourceError, match="k1"):
        secrets_from_objects([{"kind": "Secret", "metadata": {"name": "k1"}, "data": {"apiKey": "%%%"}}])


def connection_with(provider: str, *models: str) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "stringData": {"apiKey": "sk-x"}},
        {
            "apiVersion": "sluicegate.io/v1alpha1",
            "kind": "ProviderConnection",
            "metadata": {"name": provider},
            "spec": {
                "provider": provider,
                "apiKeySecretRef": {"name": "k", "key": "apiKey"},
                "models": [{"name": m} for m in models],
            },
        },
    ]


def test_a_model_past_its_retirement_date_gets_a_warning_and_a_current_one_none() -> None:
    result, _, _ = render(
        connection_with("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-5", "claude-haiku-4-5")
    )
    report = result.reports[("ProviderConnection", "anthropic")]
    assert report.ready  # a warning, not a refusal: the operator still seals it
    assert report.warnings == (
        "model claude-sonnet-4-20250514 was retired by anthropic on 2026-06-15: requests to it fail; "
        "declare a current model",
        "model claude-sonnet-4-5 is deprecated by anthropic and retires on 2026-11-30",
    )


def test_a_model_the_price_catalog_marks_deprecated_gets_a_warning() -> None:
    result, _, _ = render(connection_with("gemini", "gemini-2.0-flash", "gemini-2.5-flash"))
    assert result.reports[("ProviderConnection", "gemini")].warnings == (
        "model gemini-2.0-flash is deprecated by its provider (price catalog); plan to replace it",
    )


def test_the_examples_name_no_retired_or_deprecated_model() -> None:
    result, _, _ = render(load_objects([str(EXAMPLES)]))
    assert [w for r in result.reports.values() for w in r.warnings] == []


def test_render_prints_the_retirement_warning(tmp_path: Path, capsys) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(yaml.safe_dump_all(connection_with("anthropic", "claude-3-5-haiku-20241022")))
    assert cli(["render", "-f", str(source), "-o", str(tmp_path / "out"), "--namespace", "shop"]) == 0
    assert (
        "warning: ProviderConnection/anthropic: model claude-3-5-haiku-20241022 was retired by anthropic "
        "on 2026-02-19" in capsys.readouterr().err
    )
