"""The CRDs themselves: structural, accepted by apiextensions v1, bounded for CEL cost, like the contract."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args

import celpy
import jsonschema
import kubernetes_validate
import pytest

from sluicegate_contract import schema as contract
from tests.support.crdvalidate import load_documents, to_json_schema, version_schema

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_FILES = sorted(CRD_DIR.glob("*.yaml"))
EXPECTED = {
    "providerconnections.yaml": ("ProviderConnection", ["pconn"]),
    "routingtiers.yaml": ("RoutingTier", ["rtier"]),
    "budgetpolicies.yaml": ("BudgetPolicy", ["bpol", "budget"]),
}
# JSONSchemaProps fields apiextensions.k8s.io/v1 accepts in a CRD (id, $ref, definitions, patternProperties,
# dependencies, additionalItems and $schema are refused there).
ALLOWED_KEYWORDS = frozenset(
    {
        "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
        "multipleOf", "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf",
        "anyOf", "not", "properties", "additionalProperties", "externalDocs", "example", "nullable",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
        "x-kubernetes-map-type", "x-kubernetes-validations",
    }
)  # fmt: skip
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
SCALARS = frozenset({"string", "integer", "number", "boolean"})


def crd_of(filename: str) -> dict[str, Any]:
    (crd,) = load_documents(CRD_DIR / filename)
    return crd


def schema_of(filename: str) -> Mapping[str, Any]:
    return version_schema(crd_of(filename), "v1alpha1")


def walk(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node under ``node`` with a readable path."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), Mapping):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def structural_problems(schema: Mapping[str, Any]) -> list[str]:
    """What makes a schema non-structural, or an object schema that would prune every field."""
    problems: list[str] = []
    for path, node in walk(schema, "openAPIV3Schema"):
        problems += [f"{path}: unsupported keyword {key!r}" for key in node if key not in ALLOWED_KEYWORDS]
        untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if node.get("type") not in TYPES and not untyped_ok:
            problems.append(f"{path}: needs a type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
        if node.get("additionalProperties") is False or node.get("uniqueItems") is True:
            problems.append(f"{path}: additionalProperties: false and uniqueItems: true are refused in CRDs")
        opaque = not (
            {"properties", "additionalProperties", "x-kubernetes-preserve-unknown-fields"} & set(node)
        )
        if node.get("type") == "object" and opaque and path != "openAPIV3Schema.metadata":
            problems.append(f"{path}: an object without properties prunes every field")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: an array needs items")
        problems += [
            f"{path}: required {name!r} is not a property"
            for name in node.get("required", [])
            if name not in node.get("properties", {})
        ]
        problems += list_type_problems(path, node)
    return problems


def list_type_problems(path: str, node: Mapping[str, Any]) -> list[str]:
    list_type, items = node.get("x-kubernetes-list-type"), node.get("items", {})
    if list_type == "set" and items.get("type") not in SCALARS:
        return [f"{path}: a set needs scalar items"]
    if list_type != "map":
        return []
    problems = []
    for key in node.get("x-kubernetes-list-map-keys", []):
        key_node = items.get("properties", {}).get(key, {})
        if key_node.get("type") not in SCALARS:
            problems.append(f"{path}: map key {key!r} must be a scalar property")
        if key not in items.get("required", []) and "default" not in key_node:
            problems.append(f"{path}: map key {key!r} must be required or defaulted")
    return problems


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_manifest_is_accepted_by_the_apiextensions_v1_schema(path: Path) -> None:
    (crd,) = load_documents(path)
    kubernetes_validate.validate(crd, "1.37.0", strict=True)


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_crd_declares_group_version_scope_and_names(filename: str) -> None:
    crd = crd_of(filename)
    kind, short_names = EXPECTED[filename]
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.sluicegate.io"
    assert spec["group"] == "sluicegate.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == filename.removesuffix(".yaml")
    assert spec["names"]["shortNames"] == short_names
    assert spec["names"]["categories"] == ["sluicegate"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_crd_schema_is_structural(filename: str) -> None:
    assert structural_problems(schema_of(filename)) == []


def test_structural_check_catches_an_untyped_field_and_a_misspelled_keyword() -> None:
    schema = {"type": "object", "properties": {"a": {"maxlength": 3}, "b": {"type": "object"}}}
    assert structural_problems(schema) == [
        "openAPIV3Schema.a: unsupported keyword 'maxlength'",
        "openAPIV3Schema.a: needs a type",
        "openAPIV3Schema.b: an object without properties prunes every field",
    ]


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_every_spec_string_list_and_map_is_bounded_so_cel_cost_estimates_pass(filename: str) -> None:
    unbounded = [
        path
        for path, node in walk(schema_of(filename)["properties"]["spec"], "spec")
        if (node.get("type") == "string" and "maxLength" not in node)
        or (node.get("type") == "array" and "maxItems" not in node)
        or ("additionalProperties" in node and "maxProperties" not in node)
    ]
    assert unbounded == []


def cel_rules(filename: str) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    for path, node in walk(schema_of(filename), "openAPIV3Schema"):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_every_cel_rule_compiles_and_has_a_message_and_a_valid_field_path(filename: str) -> None:
    env = celpy.Environment()
    rules = list(cel_rules(filename))
    for path, node, rule in rules:
        env.compile(rule["rule"])
        assert set(rule) <= {"rule", "message", "fieldPath", "reason"}, path
        assert len(rule["message"]) > 20, path
        assert "oldSelf" not in rule["rule"], "transition rules are not evaluated by the offline validator"
        assert rule.get("reason", "FieldValueInvalid") in {
            "FieldValueInvalid",
            "FieldValueRequired",
            "FieldValueForbidden",
        }
        for name in re.findall(r"\.(\w+)", rule.get("fieldPath", "")):
            node = node["properties"][name]
    assert rules or filename == "routingtiers.yaml"


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_every_default_is_valid_for_its_own_schema(filename: str) -> None:
    defaults = [(path, node) for path, node in walk(schema_of(filename), "") if "default" in node]
    for path, node in defaults:
        errors = list(jsonschema.Draft202012Validator(to_json_schema(node)).iter_errors(node["default"]))
        assert errors == [], path
    assert defaults


def column_schema(schema: Mapping[str, Any], json_path: str) -> Mapping[str, Any]:
    """The schema node a printer column's JSONPath points at."""
    steps = re.findall(r"\.(\w+)(\[[^\]]*\])?", json_path)
    assert "".join(f".{name}{index}" for name, index in steps) == json_path
    node = schema
    for name, index in steps:
        node = node["properties"][name]
        if index:
            node = node["items"]
    return node


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_printer_columns_point_at_fields_of_their_declared_type(filename: str) -> None:
    (version,) = crd_of(filename)["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    schema = version["schema"]["openAPIV3Schema"]
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert (column["name"], column["type"]) == ("Age", "date")
            continue
        node = column_schema(schema, column["jsonPath"])
        compatible = {"integer": {"integer"}, "number": {"number", "integer"}}
        assert node["type"] in compatible.get(column["type"], {column["type"]}), column["name"]
    assert [c["name"] for c in columns][-1] == "Age"
    ready = [c for c in columns if c["name"] == "Ready"]
    assert all(c["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status' for c in ready)


def spec_enum(filename: str, *steps: str) -> list[str]:
    node = schema_of(filename)["properties"]["spec"]
    for step in steps:
        node = node["items"] if step == "[]" else node["properties"][step]
    return list(node["enum"])


@pytest.mark.parametrize(
    ("filename", "steps", "literal"),
    [
        ("providerconnections.yaml", ("provider",), contract.ProviderKind),
        ("routingtiers.yaml", ("strategy",), contract.Strategy),
        ("routingtiers.yaml", ("fallback", "retryOn", "[]"), contract.RetryClass),
        ("budgetpolicies.yaml", ("limits", "[]", "window"), contract.Window),
        ("budgetpolicies.yaml", ("action",), contract.Action),
        ("budgetpolicies.yaml", ("ladder", "[]", "action"), contract.Action),
        ("budgetpolicies.yaml", ("splitBy",), contract.SplitBy),
        ("budgetpolicies.yaml", ("mode",), contract.Mode),
        ("budgetpolicies.yaml", ("failMode",), contract.FailMode),
    ],
)
def test_crd_enums_match_the_sealed_config_contract(
    filename: str, steps: tuple[str, ...], literal: Any
) -> None:
    assert spec_enum(filename, *steps) == list(get_args(literal))


def test_routing_defaults_match_the_sealed_config_contract() -> None:
    spec = schema_of("routingtiers.yaml")["properties"]["spec"]["properties"]
    fallback = spec["fallback"]["properties"]
    assert fallback["maxRetries"]["default"] == contract.Fallback().max_retries
    assert tuple(fallback["retryOn"]["default"]) == contract.Fallback().retry_on
    assert spec["strategy"]["default"] == "cheapest"
    assert spec["auto"]["properties"]["enabled"]["default"] is contract.AutoRule().enabled
