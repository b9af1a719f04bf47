"""fault 33: values the CRDs accept but a sidecar cannot use are refused by render, naming the
resource and the field. A BudgetPolicy's refusal fails the whole render closed (the last good config
keeps serving: no policy silently vanishes and leaves the namespace uncapped); a ProviderConnection's
leaves out only that connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluicegate_cli.main import main as cli
from sluicegate_operator.render import RenderError
from sluicegate_operator.render_cli import load_objects
from tests.operator.render.test_render_examples import EXAMPLES, render


def examples() -> list[dict[str, Any]]:
    return load_objects([str(EXAMPLES)])


def named(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"]))


@pytest.mark.parametrize(
    ("timezone", "problem"),
    [("Mars/Olympus", "unknown timezone 'Mars/Olympus'"), ("../../etc/passwd", "unknown timezone")],
)
def test_a_budget_in_a_timezone_no_zone_database_knows_fails_the_render_naming_the_field(
    timezone: str, problem: str
) -> None:
    objects = examples()
    policy = named(objects, "BudgetPolicy")
    policy["spec"]["limits"][0]["timezone"] = timezone
    with pytest.raises(RenderError) as refused:
        render(objects)
    message = str(refused.value)
    assert f"BudgetPolicy/{policy['metadata']['name']}" in message
    assert "spec.limits[0].timezone" in message and problem in message
    assert "budgets fail closed" in message and refused.value.name == policy["metadata"]["name"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amountUSD": float("inf")}, "spec.limits[0].amountUSD"),
        ({"amountUSD": 1e300}, "spec.limits[0].amountUSD"),
    ],
    ids=["infinite-cap", "overflowing-cap"],
)
def test_a_budget_cap_too_large_to_compute_with_fails_the_render(change: dict[str, Any], field: str) -> None:
    objects = examples()
    policy = named(objects, "BudgetPolicy")
    policy["spec"]["limits"][0].update(change)
    with pytest.raises(RenderError, match=field.replace("[", r"\[").replace("]", r"\]")):
        render(objects)


def test_an_alias_colliding_with_another_model_of_the_connection_leaves_out_only_that_connection() -> None:
    objects = examples()
    conn = named(objects, "ProviderConnection", "openai")
    first = conn["spec"]["models"][0]["name"]
    conn["spec"]["models"].append({"name": "gpt-4o-2024-08-06", "alias": first})
    result, _, _ = render(objects)
    assert "openai" not in {p.name for p in result.config.providers}
    report = result.reports[("ProviderConnection", "openai")]
    assert not report.ready and report.reason == "InvalidSpec"
    index = len(conn["spec"]["models"]) - 1
    assert f"spec.models[{index}].alias" in report.message and repr(first) in report.message
    assert result.reports[("ProviderConnection", "anthropic")].ready


@pytest.mark.parametrize("alias", ["auto", "tier:premium"])
def test_an_alias_shadowing_the_gateways_own_names_is_refused(alias: str) -> None:
    objects = examples()
    named(objects, "ProviderConnection", "openai")["spec"]["models"][0]["alias"] = alias
    result, _, _ = render(objects)
    report = result.reports[("ProviderConnection", "openai")]
    assert not report.ready and "spec.models[0].alias" in report.message and "reserved" in report.message


@pytest.mark.parametrize("price", [1e300, float("inf"), float("nan"), 2e6])
def test_a_price_override_too_large_to_compute_with_leaves_out_its_connection(price: float) -> None:
    objects = examples()
    conn = named(objects, "ProviderConnection", "openai")
    conn["spec"]["models"][0]["pricing"] = {"inputPerMTok": price, "outputPerMTok": 1.0}
    result, _, _ = render(objects)
    assert "openai" not in {p.name for p in result.config.providers}
    report = result.reports[("ProviderConnection", "openai")]
    assert not report.ready and "spec.models[0].pricing.inputPerMTok" in report.message


def test_sluicegate_render_refuses_a_mars_timezone_and_leaves_the_last_config_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, inputs = tmp_path / "cfg", tmp_path / "in"
    assert cli(["render", "-f", str(EXAMPLES), "-o", str(out)]) == 0
    before = (out / "config.json").read_bytes()
    inputs.mkdir()
    objects = examples()
    policy = named(objects, "BudgetPolicy")
    policy["spec"]["limits"][0]["timezone"] = "Mars/Olympus"
    (inputs / "all.yaml").write_text(yaml.safe_dump_all(objects))
    capsys.readouterr()

    assert cli(["render", "-f", str(inputs), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"BudgetPolicy/{policy['metadata']['name']}: spec.limits[0].timezone" in err
    assert "Mars/Olympus" in err
    assert (out / "config.json").read_bytes() == before
    assert json.loads(before)["serial"] == 1


def test_sluicegate_render_warns_naming_the_field_of_a_colliding_alias(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    objects = examples()
    conn = named(objects, "ProviderConnection", "openai")
    conn["spec"]["models"].append({"name": "gpt-4o-2024-08-06", "alias": conn["spec"]["models"][0]["name"]})
    (inputs / "all.yaml").write_text(yaml.safe_dump_all(objects))
    assert cli(["render", "-f", str(inputs), "-o", str(tmp_path / "cfg")]) == 0
    err = capsys.readouterr().err
    assert "ProviderConnection/openai: InvalidSpec" in err and ".alias" in err
