"""`sluicegate import …`: prints YAML that `sluicegate render` accepts; errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sluicegate_cli.main import main as cli

DATA = Path(__file__).with_name("data")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli(["import", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("source", "sample"),
    [
        ("portkey-config", "portkey-fallback-nested-loadbalance.json"),
        ("portkey-config", "portkey-conditional.json"),
        ("litellm-config", "litellm-config.yaml"),
    ],
)
def test_printed_yaml_renders_into_a_sealed_config(capsys, tmp_path: Path, source: str, sample: str) -> None:
    code, out, err = run(capsys, source, DATA / sample, "--namespace", "shop")
    assert code == 0, err
    assert "items not carried over" in err
    imported = tmp_path / "imported.yaml"
    imported.write_text(out)
    code, _, err = run_render(capsys, imported, tmp_path / "cfg")
    assert code == 0, err
    assert "warning" not in err
    assert (tmp_path / "cfg" / "config.json").exists()


def run_render(capsys, file: Path, out: Path) -> tuple[int, str, str]:
    code = cli(["render", "-f", str(file), "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def test_tier_is_named_after_the_file_unless_given(capsys) -> None:
    _, out, _ = run(capsys, "portkey-config", DATA / "portkey-single-inline-key.json")
    tiers = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "RoutingTier"]
    assert [t["metadata"]["name"] for t in tiers] == ["portkey-single-inline-key"]
    _, out, _ = run(capsys, "portkey-config", DATA / "portkey-single-inline-key.json", "--tier", "Chat")
    tiers = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "RoutingTier"]
    assert [t["metadata"]["name"] for t in tiers] == ["chat"]


def test_the_configs_api_reply_is_unwrapped_and_model_flag_fills_missing_models(capsys) -> None:
    code, out, _ = run(
        capsys, "portkey-config", DATA / "portkey-virtual-keys-without-model.json", "--model", "gpt-4o"
    )
    assert code == 0
    connections = [
        d["metadata"]["name"] for d in yaml.safe_load_all(out) if d and d["kind"] == "ProviderConnection"
    ]
    assert connections == ["main-258f4d", "azure-test-4110dd"]


def test_models_without_any_price_are_flagged_before_applying(capsys) -> None:
    _, out, _ = run(capsys, "portkey-config", DATA / "portkey-conditional.json")
    assert "ollama/llama3.1:8b has no catalog price" in out


def test_invalid_json_fails_with_one_actionable_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{'strategy': ")
    code, out, err = run(capsys, "portkey-config", bad)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "not valid JSON" in err


def test_a_config_id_instead_of_a_config_is_explained(capsys, tmp_path: Path) -> None:
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps("pc-abc-123"))
    code, _, err = run(capsys, "portkey-config", ref)
    assert code == 1 and "export the config's JSON" in err


def test_litellm_file_without_model_list_fails_clearly(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("general_settings:\n  master_key: sk-1234\n")
    code, out, err = run(capsys, "litellm-config", bad)
    assert code == 1 and out == ""
    assert "needs a model_list" in err and "sk-1234" not in err


def test_missing_file_fails_clearly(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "litellm-config", tmp_path / "nope.yaml")
    assert code == 1 and "cannot read it" in err


def test_nothing_importable_exits_non_zero_but_still_lists_why(capsys, tmp_path: Path) -> None:
    only_bedrock = tmp_path / "bedrock.json"
    only_bedrock.write_text(json.dumps({"provider": "bedrock", "override_params": {"model": "titan"}}))
    code, out, err = run(capsys, "portkey-config", only_bedrock)
    assert code == 1
    assert "provider 'bedrock'" in out and "nothing" in err
