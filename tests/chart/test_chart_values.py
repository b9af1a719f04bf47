"""values.schema.json accepts the shipped values and refuses bad ones with an error naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "sluicegate"


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def _object_schemas(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every sub-schema that declares properties, with its JSON-pointer-ish location."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append((path or "/", schema))
        for key, value in schema.items():
            if key == "properties":
                for name, sub in value.items():
                    found += _object_schemas(sub, f"{path}/{name}")
            elif key in {"items", "additionalProperties"}:
                found += _object_schemas(value, f"{path}/{key}")
            elif key in {"anyOf", "oneOf", "allOf"}:
                for sub in value:
                    found += _object_schemas(sub, path)
    return found


def test_shipped_values_satisfy_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(_schema()).validate(values)


def test_every_object_level_of_the_schema_refuses_unknown_keys() -> None:
    levels = _object_schemas(_schema())
    assert len(levels) > 15
    open_levels = [path for path, sub in levels if sub.get("additionalProperties") is not False]
    assert open_levels == []


def test_the_schema_names_every_key_of_the_shipped_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = _schema()

    def walk(value: Any, sub: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in sub:
            for key, inner in value.items():
                assert key in sub["properties"], f"{path}/{key} is not in values.schema.json"
                walk(inner, sub["properties"][key], f"{path}/{key}")

    walk(values, schema, "")


BAD_VALUES = [
    ({"webhook": {"failurePolicy": "Sometimes"}}, "/webhook/failurePolicy", "'Fail', 'Ignore'"),
    ({"webhook": {"timeoutSeconds": 60}}, "/webhook/timeoutSeconds", "maximum"),
    ({"operator": {"replicas": 0}}, "/operator/replicas", "minimum"),
    ({"operator": {"replicaCount": 2}}, "/operator", "'replicaCount' not allowed"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "/operator/watchNamespaces/0", "pattern"),
    (
        {"operator": {"alertWebhooks": {"allow": ["http://hooks.example.com/x"]}}},
        "/operator/alertWebhooks/allow/0",
        "pattern",
    ),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"),
    ({"monitoring": {"enabled": "yes"}}, "/monitoring/enabled", "want boolean"),
    (
        {"monitoring": {"podMonitor": {"interval": "thirty seconds"}}},
        "/monitoring/podMonitor/interval",
        "pattern",
    ),
    ({"monitoring": {"grafana": {}}}, "/monitoring", "'grafana' not allowed"),
    (
        {"budgetAlerts": {"thresholds": [{"fraction": 0, "severity": "info"}]}},
        "/budgetAlerts/thresholds/0/fraction",
        "exclusiveMinimum",
    ),
    (
        {"budgetAlerts": {"thresholds": [{"fraction": 0.9, "severity": "page"}]}},
        "/budgetAlerts/thresholds/0/severity",
        "'info', 'warning', 'critical'",
    ),
    ({"budgetAlerts": {"thresholds": []}}, "/budgetAlerts/thresholds", "minItems"),
    (
        {"sidecar": {"resources": {"requests": {"cpu": "lots"}}}},
        "/sidecar/resources/requests/cpu",
        "does not match",
    ),
    (
        {"certManager": {"enabled": True, "issuerRef": {"name": "x"}}},
        "/certManager/issuerRef",
        "missing property 'kind'",
    ),
    ({"unknownTopLevel": 1}, "at '':", "additional properties 'unknownTopLevel' not allowed"),
]


@pytest.mark.parametrize(("values", "where", "why"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_bad_values_are_refused_with_an_error_naming_the_field(
    helm: Any, values: Any, where: str, why: str
) -> None:
    done = subprocess_template(helm, values)
    assert done.returncode != 0, f"helm accepted {values}"
    assert "values don't meet the specifications of the schema" in done.stderr
    assert where in done.stderr, done.stderr
    assert why in done.stderr, done.stderr
    assert len(done.stderr) < 2000, "the error should stay short enough to read"


@pytest.mark.parametrize(
    "values",
    [
        {"webhook": {"failurePolicy": "Ignore"}},
        {"operator": {"alertWebhooks": {"allow": ["*.corp.example", "hooks.example.com", "10.0.0.0/8"]}}},
        {"operator": {"resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}}}},
        {"certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}},
        {"budgetAlerts": {"thresholds": [{"fraction": 0.9, "severity": "critical"}], "for": "1h30m"}},
    ],
)
def test_reasonable_values_are_accepted(helm: Any, values: Any) -> None:
    done = subprocess_template(helm, values)
    assert done.returncode == 0, done.stderr


def subprocess_template(helm: Any, values: dict[str, Any]) -> Any:
    return helm.run("template", "x", str(CHART), "--values", "-", check=False, stdin=json.dumps(values))
