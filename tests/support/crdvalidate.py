"""Validate custom resources against our CRDs offline, as the apiserver with strict field validation would.

Applies schema defaults, checks the structural schema (as JSON Schema), list types and every CEL rule.
Test support only: the product never imports it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Schema = Mapping[str, Any]
CrdIndex = dict[tuple[str, str], dict[str, Any]]
PathParts = tuple[str | int, ...]
PRESERVE = "x-kubernetes-preserve-unknown-fields"

CEL_SKIPPED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)
# The apiserver skips CEL rules when the schema check found one of these (hasBlockingErr).
_VALUE_KEYWORDS = (
    "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems", "multipleOf",
    "minProperties", "maxProperties", "required", "maximum", "minimum",
)  # fmt: skip
_BLOCKING_KEYWORDS = frozenset({"type", "enum", "required", "maxLength", "maxItems", "maxProperties"})


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in one file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def load_crds(directory: Path) -> CrdIndex:
    """The CRDs in ``directory``'s *.yaml files, keyed by (apiVersion, kind) for each served version."""
    index: CrdIndex = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in load_documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", False):
                    index[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = doc
    return index


def version_schema(crd: Mapping[str, Any], version: str) -> Schema:
    """The openAPIV3Schema of one version of a CRD."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: Schema = entry["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"{crd['metadata']['name']} has no version {version}")


def validate(obj: Mapping[str, Any], crds: CrdIndex) -> list[str]:
    """Errors the apiserver would report on creating ``obj`` (empty when it would be accepted)."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    crd = crds.get((api_version, kind))
    if crd is None:
        return [f'no CustomResourceDefinition serves kind "{kind}" in "{api_version}"']
    schema = version_schema(crd, api_version.rsplit("/", 1)[-1])
    value = copy.deepcopy(dict(obj))
    apply_defaults(value, schema)
    errors = metadata_errors(value.get("metadata"))
    validator = jsonschema.Draft202012Validator(to_json_schema(schema, root=True))
    blocked = False
    for error in sorted(validator.iter_errors(value), key=lambda e: e.json_path):
        blocked = blocked or error.validator in _BLOCKING_KEYWORDS
        errors.extend(describe_schema_error(error))
    errors.extend(list_type_errors(value, schema, ()))
    if blocked:
        errors.append(CEL_SKIPPED)
    else:
        errors.extend(rule_errors(value, schema, (), celpy.Environment(), {}))
    return list(dict.fromkeys(errors))


def apply_defaults(value: Any, node: Schema) -> None:
    """Fill absent properties from their schema defaults in place, top-down, as the apiserver does."""
    if isinstance(value, dict):
        properties = node.get("properties")
        additional = node.get("additionalProperties")
        if properties:
            for name, sub in properties.items():
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                if name in value:
                    apply_defaults(value[name], sub)
        elif isinstance(additional, Mapping):
            for item in value.values():
                apply_defaults(item, additional)
    elif isinstance(value, list) and isinstance(node.get("items"), Mapping):
        for item in value:
            apply_defaults(item, node["items"])


def to_json_schema(node: Schema, *, root: bool = False, structural: bool = True) -> dict[str, Any]:
    """Translate a structural OpenAPI v3 schema to JSON Schema that refuses unknown fields."""
    out: dict[str, Any] = {}
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif kind is not None:
        out["type"] = [kind, "null"] if node.get("nullable") else kind
    out.update({keyword: node[keyword] for keyword in _VALUE_KEYWORDS if keyword in node})
    if "enum" in out and node.get("nullable"):
        out["enum"] = [*out["enum"], None]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
    if "properties" in node:
        out["properties"] = {
            name: {"type": "object"}
            if root and name == "metadata"
            else to_json_schema(sub, structural=structural)
            for name, sub in node["properties"].items()
        }
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = to_json_schema(additional, structural=structural)
    elif structural and kind == "object" and additional is not True and not node.get(PRESERVE):
        out["additionalProperties"] = False
    if isinstance(node.get("items"), Mapping):
        out["items"] = to_json_schema(node["items"], structural=structural)
    for junctor in ("allOf", "anyOf", "oneOf"):
        if junctor in node:
            out[junctor] = [to_json_schema(sub, structural=False) for sub in node[junctor]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"], structural=False)
    return out


def describe_schema_error(error: jsonschema.ValidationError) -> list[str]:
    """Word a JSON Schema failure the way the apiserver and ``kubectl --validate=strict`` do."""
    path = format_path(tuple(error.absolute_path))
    instance, expected = error.instance, error.validator_value
    shown = show_value(instance)
    match error.validator:
        case "additionalProperties":
            known = error.schema.get("properties", {})
            return [
                f'unknown field "{format_path((*error.absolute_path, name))}"'
                for name in instance
                if name not in known
            ]
        case "required":
            return [
                f"{format_path((*error.absolute_path, name))}: Required value"
                for name in expected
                if name not in instance
            ]
        case "type":
            return [f"{path}: Invalid value: {shown}: must be of type {' or '.join(_as_list(expected))}"]
        case "enum":
            supported = ", ".join(json.dumps(choice) for choice in expected)
            return [f"{path}: Unsupported value: {shown}: supported values: {supported}"]
        case "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum":
            relation = {
                "minimum": "greater than or equal to",
                "exclusiveMinimum": "greater than",
                "maximum": "less than or equal to",
                "exclusiveMaximum": "less than",
            }[str(error.validator)]
            return [f"{path}: Invalid value: {shown}: must be {relation} {expected}"]
        case "pattern":
            return [f"{path}: Invalid value: {shown}: should match '{expected}'"]
        case "minLength" | "minItems" | "minProperties":
            return [f"{path}: Invalid value: {shown}: must have at least {expected} {_unit(error.validator)}"]
        case "maxLength" | "maxItems" | "maxProperties":
            return [f"{path}: Too long: {shown}: may have at most {expected} {_unit(error.validator)}"]
        case _:
            return [f"{path}: Invalid value: {shown}: {error.message}"]


def metadata_errors(metadata: Any) -> list[str]:
    """What the apiserver's ObjectMeta checks would refuse (the CRD schema says only ``type: object``)."""
    if not isinstance(metadata, dict):
        return ["metadata: Required value"]
    errors = [f'unknown field "metadata.{name}"' for name in metadata if name not in OBJECT_META_FIELDS]
    name = metadata.get("name")
    if name is None and not metadata.get("generateName"):
        errors.append("metadata.name: Required value: name or generateName is required")
    elif name is not None and (
        not isinstance(name, str) or len(name) > 253 or not DNS1123_SUBDOMAIN.match(name)
    ):
        errors.append(
            f"metadata.name: Invalid value: {show_value(name)}: must be a lowercase RFC 1123 subdomain"
        )
    for field in ("labels", "annotations"):
        mapping = metadata.get(field, {})
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            errors.append(f"metadata.{field}: Invalid value: must map strings to strings")
    return errors


def list_type_errors(value: Any, node: Schema, path: PathParts) -> Iterator[str]:
    """Duplicates in ``x-kubernetes-list-type: map`` (by key) and ``set`` lists."""
    if isinstance(value, list):
        list_type = node.get("x-kubernetes-list-type")
        seen: list[Any] = []
        for index, item in enumerate(value):
            if list_type == "map" and isinstance(item, dict):
                key = {name: item.get(name) for name in node.get("x-kubernetes-list-map-keys", [])}
            elif list_type == "set":
                key = item
            else:
                continue
            if key in seen:
                yield f"{format_path((*path, index))}: Duplicate value: {json.dumps(key)}"
            seen.append(key)
    for child_path, child, child_node in _children(value, node, path):
        yield from list_type_errors(child, child_node, child_path)


def rule_errors(
    value: Any, node: Schema, path: PathParts, env: Any, programs: dict[str, Any]
) -> Iterator[str]:
    """Evaluate every ``x-kubernetes-validations`` rule at the node declaring it, with ``self`` bound."""
    for rule in node.get("x-kubernetes-validations", []):
        expression = rule["rule"]
        if expression not in programs:
            programs[expression] = env.program(env.compile(expression))
        try:
            result = programs[expression].evaluate({"self": cel_value(value, node)})
        except CELEvalError as failure:
            result = failure
        if not isinstance(result, celtypes.BoolType):
            yield f"{format_path(path)}: Internal error: rule {expression!r} did not yield a bool: {result!r}"
        elif not result:
            yield describe_rule_failure(rule, node, path)
    for child_path, child, child_node in _children(value, node, path):
        yield from rule_errors(child, child_node, child_path, env, programs)


def describe_rule_failure(rule: Mapping[str, Any], node: Schema, path: PathParts) -> str:
    """Word a failed rule as the apiserver does, honouring ``fieldPath`` and ``reason``."""
    message = rule.get("message") or f"failed rule: {rule['rule']}"
    where = format_path((*path, *parse_field_path(rule.get("fieldPath", ""))))
    match rule.get("reason", "FieldValueInvalid"):
        case "FieldValueRequired":
            return f"{where}: Required value: {message}"
        case "FieldValueForbidden":
            return f"{where}: Forbidden: {message}"
        case _:
            return f'{where}: Invalid value: "{node.get("type", "object")}": {message}'


def cel_value(value: Any, node: Schema) -> Any:
    """Convert a JSON value to CEL as the apiserver does: typed by the schema, unknown fields pruned."""
    kind = node.get("type")
    if value is None:
        return None
    if isinstance(value, dict) and kind == "object":
        properties, additional = node.get("properties"), node.get("additionalProperties")
        if properties is not None:
            pairs = {k: cel_value(v, properties[k]) for k, v in value.items() if k in properties}
        elif isinstance(additional, Mapping):
            pairs = {k: cel_value(v, additional) for k, v in value.items()}
        else:
            return json_to_cel(value)
        return celtypes.MapType({celtypes.StringType(k): v for k, v in pairs.items()})
    if isinstance(value, list) and kind == "array":
        return celtypes.ListType([cel_value(item, node.get("items", {})) for item in value])
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "number" and is_number:
        return celtypes.DoubleType(float(value))
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.IntType(value)
    if kind == "string" and isinstance(value, str):
        return celtypes.StringType(value)
    if kind == "boolean" and isinstance(value, bool):
        return celtypes.BoolType(value)
    return json_to_cel(value)


def parse_field_path(field_path: str) -> PathParts:
    """``.spec.items[0].name`` → ("spec", "items", 0, "name"); the simple subset the CRDs use."""
    parts: list[str | int] = []
    for name, index in re.findall(r"\.([A-Za-z0-9_$-]+)|\[(\d+)\]", field_path):
        parts.append(name if name else int(index))
    return tuple(parts)


def format_path(parts: PathParts) -> str:
    """("spec", "models", 0, "name") → ``spec.models[0].name``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def show_value(value: Any) -> str:
    """A value as error messages show it: JSON scalars, and only the type of objects and arrays."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _children(value: Any, node: Schema, path: PathParts) -> Iterator[tuple[PathParts, Any, Schema]]:
    """The schema-known children of a value with their schemas (unknown fields are pruned)."""
    if isinstance(value, dict):
        properties, additional = node.get("properties"), node.get("additionalProperties")
        for name, item in value.items():
            if properties and name in properties:
                yield (*path, name), item, properties[name]
            elif not properties and isinstance(additional, Mapping):
                yield (*path, name), item, additional
    elif isinstance(value, list) and isinstance(node.get("items"), Mapping):
        for index, item in enumerate(value):
            yield (*path, index), item, node["items"]


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _unit(keyword: object) -> str:
    return {"Length": "characters", "Items": "items", "Properties": "properties"}[str(keyword)[3:]]
