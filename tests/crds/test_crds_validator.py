"""The offline CR validator behaves like the apiserver on the constructs our CRDs use, and a few more."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.crdvalidate import CEL_SKIPPED, CrdIndex, format_path, parse_field_path, validate

API_VERSION = "example.test/v1"


def crd_with(spec_schema: dict[str, Any]) -> CrdIndex:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.test"},
        "spec": {
            "group": "example.test",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                            },
                        }
                    },
                }
            ],
        },
    }
    return {(API_VERSION, "Widget"): crd}


def widget(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Widget", "metadata": {"name": "w1", **metadata}, "spec": spec}


def test_an_unknown_kind_is_refused() -> None:
    errors = validate({"apiVersion": "example.test/v2", "kind": "Widget", "metadata": {"name": "w"}}, {})
    assert errors == ['no CustomResourceDefinition serves kind "Widget" in "example.test/v2"']


def test_unknown_fields_are_refused_at_any_depth_but_kept_under_preserve_unknown_fields() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {
                "inner": {"type": "object", "properties": {"a": {"type": "string"}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    )
    ok = widget({"inner": {"a": "x"}, "free": {"anything": [1, {"b": 2}]}, "labels": {"k": "v"}})
    assert validate(ok, crds) == []
    bad = widget({"inner": {"a": "x", "b": 1}, "extra": True, "labels": {"k": 1}})
    assert validate(bad, crds) == [
        'unknown field "spec.extra"',
        'unknown field "spec.inner.b"',
        "spec.labels.k: Invalid value: 1: must be of type string",
        CEL_SKIPPED,
    ]


def test_unknown_top_level_and_metadata_fields_and_bad_names_are_refused() -> None:
    crds = crd_with({"type": "object"})
    doc = widget({"x": 1}, colour="red")
    doc["metadata"]["name"] = "Not_A_Name"
    doc["spek"] = {}
    assert validate(doc, crds) == [
        'unknown field "metadata.colour"',
        'metadata.name: Invalid value: "Not_A_Name": must be a lowercase RFC 1123 subdomain',
        'unknown field "spek"',
        'unknown field "spec.x"',
    ]


def test_nullable_and_int_or_string_accept_what_kubernetes_accepts() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
            },
        }
    )
    assert validate(widget({"port": 80, "note": None}), crds) == []
    assert validate(widget({"port": "http"}), crds) == []
    assert (
        validate(widget({"port": 1.5}), crds)[0]
        == "spec.port: Invalid value: 1.5: must be of type integer or string"
    )
    assert (
        validate(widget({"note": 3}), crds)[0]
        == "spec.note: Invalid value: 3: must be of type string or null"
    )


def test_cel_rules_see_defaults_applied_first() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {"mode": {"type": "string", "default": "strict"}, "reason": {"type": "string"}},
            "x-kubernetes-validations": [
                {"rule": "self.mode != 'strict' || has(self.reason)", "message": "strict mode needs a reason"}
            ],
        }
    )
    assert validate(widget({}), crds) == ['spec: Invalid value: "object": strict mode needs a reason']
    assert validate(widget({"mode": "loose"}), crds) == []


def test_cel_sees_number_fields_as_doubles_even_when_written_as_integers() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {
                "ratio": {"type": "number", "x-kubernetes-validations": [{"rule": "self <= 1.0"}]}
            },
        }
    )
    assert validate(widget({"ratio": 1}), crds) == []
    assert validate(widget({"ratio": 2}), crds) == [
        'spec.ratio: Invalid value: "number": failed rule: self <= 1.0'
    ]


def test_cel_rules_run_on_every_list_item_and_map_value_with_field_path_and_reason() -> None:
    item_rule = {"rule": "self.size() <= 3", "message": "at most 3 characters"}
    crds = crd_with(
        {
            "type": "object",
            "properties": {
                "names": {
                    "type": "array",
                    "items": {"type": "string", "x-kubernetes-validations": [item_rule]},
                },
                "tags": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "x-kubernetes-validations": [item_rule]},
                },
                "b": {"type": "string"},
            },
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.b)",
                    "message": "b is needed",
                    "fieldPath": ".b",
                    "reason": "FieldValueRequired",
                }
            ],
        }
    )
    assert validate(widget({"names": ["abc", "abcd"], "tags": {"t": "long"}}), crds) == [
        "spec.b: Required value: b is needed",
        'spec.names[1]: Invalid value: "string": at most 3 characters',
        'spec.tags.t: Invalid value: "string": at most 3 characters',
    ]


def test_cel_does_not_see_pruned_unknown_fields() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "!has(self.ghost)", "message": "ghost must be pruned"}],
        }
    )
    assert validate(widget({"a": "x", "ghost": 1}), crds) == ['unknown field "spec.ghost"']


def test_cel_rules_are_skipped_after_a_type_error_as_the_apiserver_does() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.n > 0", "message": "n must be positive"}],
        }
    )
    assert validate(widget({"n": "five"}), crds) == [
        'spec.n: Invalid value: "five": must be of type integer',
        CEL_SKIPPED,
    ]
    assert validate(widget({"n": -1}), crds) == ['spec: Invalid value: "object": n must be positive']


def test_a_rule_that_cannot_be_evaluated_is_reported_not_skipped() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.n > 0", "message": "n must be positive"}],
        }
    )
    (error,) = validate(widget({}), crds)
    assert error.startswith("spec: Internal error: rule 'self.n > 0' did not yield a bool")


def test_list_map_and_set_duplicates_are_refused() -> None:
    crds = crd_with(
        {
            "type": "object",
            "properties": {
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
                    },
                },
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            },
        }
    )
    doc = widget({"ports": [{"name": "a", "n": 1}, {"name": "a", "n": 2}], "tags": ["x", "y", "x"]})
    assert validate(doc, crds) == [
        'spec.ports[1]: Duplicate value: {"name": "a"}',
        'spec.tags[2]: Duplicate value: "x"',
    ]


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        ({"type": "integer", "minimum": 0, "exclusiveMinimum": True}, 0, "must be greater than 0"),
        ({"type": "integer", "maximum": 5}, 6, "must be less than or equal to 5"),
        ({"type": "string", "maxLength": 2}, "abc", 'Too long: "abc": may have at most 2 characters'),
        ({"type": "array", "minItems": 1, "items": {"type": "string"}}, [], "must have at least 1 items"),
        ({"type": "string", "enum": ["a", "b"]}, "c", 'Unsupported value: "c": supported values: "a", "b"'),
    ],
)
def test_openapi_value_checks_are_worded_like_the_apiserver(
    schema: dict[str, Any], value: Any, message: str
) -> None:
    crds = crd_with({"type": "object", "properties": {"v": schema}})
    assert message in validate(widget({"v": value}), crds)[0]


def test_missing_required_fields_are_named() -> None:
    crds = crd_with(
        {
            "type": "object",
            "required": ["a", "b"],
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        }
    )
    assert validate(widget({}), crds) == ["spec.a: Required value", "spec.b: Required value", CEL_SKIPPED]


def test_field_paths_round_trip() -> None:
    assert parse_field_path(".spec.models[3].name") == ("spec", "models", 3, "name")
    assert format_path(("spec", "models", 3, "name")) == "spec.models[3].name"
