"""value_from_schema: a JSON value valid under the schema it is given, the same for the same seed."""

from __future__ import annotations

import random

import jsonschema
import pytest

from sluicegate_sidecar.mock.schema import value_from_schema

SCHEMAS = [
    {"type": "string", "minLength": 30, "maxLength": 40},
    {"type": "integer", "exclusiveMinimum": 5, "maximum": 6},
    {"type": "number", "minimum": -2.5, "maximum": -2.0},
    {"type": ["null", "boolean"]},
    {"enum": ["red", "green"]},
    {"const": {"fixed": [1, 2]}},
    {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 5},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
    {"type": "string", "format": "date-time"},
    {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}},
    {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"required": ["b"]}]},
    {
        "oneOf": [
            {"type": "null"},
            {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
        ]
    },
    {  # recursive, as pydantic writes a tree
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name", "children"],
            }
        },
    },
    {
        "type": "object",
        "properties": {"email": {"type": "string", "format": "email"}},
        "required": ["email"],
        "additionalProperties": False,
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_value_is_valid_under_its_schema_and_repeatable(schema) -> None:
    value = value_from_schema(schema, random.Random(7))
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert value_from_schema(schema, random.Random(7)) == value


def test_an_object_without_a_required_list_gets_every_property() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}}}
    assert set(value_from_schema(schema, random.Random(1))) == {"a", "b"}
