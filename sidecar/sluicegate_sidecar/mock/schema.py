"""A JSON value that satisfies a JSON Schema, for the mock provider's tool arguments and structured
output (any protocol's: chat ``response_format``, Messages ``output_format``, Responses ``text.format``).

Pure and deterministic: the same schema and ``random.Random`` state give the same value. Covers what
tool and structured-output schemas use (objects, arrays, scalars with bounds, ``enum``/``const``,
``anyOf``/``oneOf``/``allOf``, local ``$ref`` to ``$defs``/``definitions``, common string formats);
``pattern`` is not honoured.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

_WORDS = ("Paris", "quarterly report", "blue", "tomorrow", "order 1234", "Lisbon", "budget", "gateway")
_FORMATS = {
    "date-time": "2026-01-15T09:30:00Z",
    "date": "2026-01-15",
    "time": "09:30:00",
    "email": "ada@example.com",
    "uri": "https://example.com/item/42",
    "url": "https://example.com/item/42",
    "uuid": "3f1c2a9e-8b7d-4c6e-9a1b-2d3e4f5a6b7c",
    "hostname": "api.example.com",
    "ipv4": "192.0.2.7",
}
MAX_DEPTH = 12  # deeper (or recursive) schemas get the smallest valid value there
MAX_ITEMS = 3


def value_from_schema(schema: object, rng: random.Random) -> Any:
    """A value valid under ``schema`` (a JSON Schema object; ``True``/``{}`` accept anything).

    Objects get their required properties (all of them when the schema lists none), arrays
    ``minItems`` items (at least one, at most ``maxItems``).
    """
    return _value(schema, rng, schema if isinstance(schema, Mapping) else {}, 0)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping):
        return {}
    rest = {k: v for k, v in schema.items() if k != "$ref"}
    return {**node, **rest}


def _merged(parts: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, Mapping):
                out["properties"] = {**out.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                out["required"] = [*out.get("required", []), *value]
            else:
                out.setdefault(key, value)
    return out


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = kinds[0]
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if "minimum" in schema or "maximum" in schema:
        return "number"
    return "string"


def _value(schema: object, rng: random.Random, root: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(schema, Mapping):
        return rng.choice(_WORDS)
    schema = _resolve(schema, root)
    if "allOf" in schema and isinstance(schema["allOf"], list):
        schema = _merged([{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]])
        schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[rng.randrange(len(enum))]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next(
                (o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")), None
            )
            return _value(chosen if chosen is not None else options[0], rng, root, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, rng, root, depth)
    if kind == "array":
        return _array(schema, rng, root, depth)
    if kind == "integer":
        low, high = _bounds(schema, 1, 10)
        return rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))
    if kind == "number":
        low, high = _bounds(schema, 1.0, 100.0)
        return round(low + (high - low) * rng.random(), 2) if high > low else low
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _bounds(schema: Mapping[str, Any], low: float, high: float) -> tuple[float, float]:
    def number(key: str) -> float | None:
        value = schema.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    minimum, maximum = number("minimum"), number("maximum")
    exclusive_min, exclusive_max = number("exclusiveMinimum"), number("exclusiveMaximum")
    if exclusive_min is not None:
        minimum = exclusive_min + 1 if schema.get("type") == "integer" else exclusive_min + 0.01
    if exclusive_max is not None:
        maximum = exclusive_max - 1 if schema.get("type") == "integer" else exclusive_max - 0.01
    if minimum is not None:
        low = minimum
        high = max(high, low)
    if maximum is not None:
        high = maximum
        low = min(low, high)
    return low, high


def _string(schema: Mapping[str, Any], rng: random.Random) -> str:
    text = _FORMATS.get(str(schema.get("format")), rng.choice(_WORDS))
    min_length, max_length = schema.get("minLength"), schema.get("maxLength")
    if isinstance(min_length, int) and len(text) < min_length:
        text = (text + " ") * (min_length // (len(text) + 1) + 1)
    if isinstance(max_length, int) and len(text) > max_length:
        text = text[: max(max_length, 0)]
    return text


def _object(schema: Mapping[str, Any], rng: random.Random, root: Mapping[str, Any], depth: int) -> Any:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    listed = [n for n in required if isinstance(n, str)] if isinstance(required, list) else None
    names = listed if listed is not None else list(properties)
    if depth >= MAX_DEPTH:
        names = listed or []
    return {name: _value(properties.get(name, {}), rng, root, depth + 1) for name in names}


def _array(schema: Mapping[str, Any], rng: random.Random, root: Mapping[str, Any], depth: int) -> Any:
    prefix = schema.get("prefixItems")
    head = [_value(s, rng, root, depth + 1) for s in prefix] if isinstance(prefix, list) else []
    min_items, max_items = schema.get("minItems"), schema.get("maxItems")
    min_items = min_items if isinstance(min_items, int) else 0
    max_items = max_items if isinstance(max_items, int) else MAX_ITEMS
    count = min(max(min_items, 0 if depth >= MAX_DEPTH else 1), max_items) - len(head)
    items = schema.get("items", {})
    if items is False:
        return head
    return head + [_value(items, rng, root, depth + 1) for _ in range(max(count, 0))]
