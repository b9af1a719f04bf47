"""Strict decoding of client request bodies. Pure.

The JSON parser refuses duplicate keys, NaN/Infinity, non-UTF-8 and excessive nesting; the
fields routing and budgets need are then checked by type with a msgspec struct.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import msgspec

from .errors import ApiError, bad_request
from .providers.base import smaller_cap

MAX_DEPTH = 64
MAX_N = 16
MAX_BEST_OF = 20  # OpenAI's own limit on /v1/completions
CLOSE = MappingProxyType({"connection": "close"})  # an error sent before the whole body was read
# Scope key set (True) by the API listener's protocol once a request's whole body is buffered: the
# body is then read with one ``receive()``, which returns at once, under no deadline (the hot path).
BODY_IN = "sluicegate.body_in"
# Client fields that could pick the upstream or its credentials (fault 3): refused outright.
ROUTING_FIELDS = frozenset(
    {"api_base", "base_url", "api_key", "api_version", "custom_llm_provider", "extra_headers", "organization"}
)


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# What ``json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)`` would build per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)


def _too_deep(body: bytes) -> bool:
    depth = 0
    deepest = 0
    in_string = False
    escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return True
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return False


def decode_body(body: bytes) -> dict[str, Any]:
    """The request object, or ``ApiError`` 400 that never echoes the body."""
    if body.startswith(b"\xef\xbb\xbf"):
        raise bad_request(
            "The request body starts with a byte-order mark; send plain UTF-8 JSON.", code="bad_json"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid UTF-8.", code="bad_json") from None
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _too_deep(body):
        raise bad_request(f"The request body nests deeper than {MAX_DEPTH} levels.", code="bad_json")
    try:
        value = _DECODER.decode(text)
    except _Duplicate as exc:
        raise bad_request(f"The request body repeats the key '{str(exc)[:64]}'.", code="bad_json") from None
    except (ValueError, RecursionError):
        raise bad_request("The request body is not valid JSON.", code="bad_json") from None
    if not isinstance(value, dict):
        raise bad_request("The request body must be a JSON object.", code="bad_json")
    for field in ROUTING_FIELDS & value.keys():
        raise bad_request(
            f"The field '{field}' is not accepted: the upstream and its credentials come from the config.",
            param=field,
        )
    return value


class Fields(msgspec.Struct, frozen=True):
    """The fields the gateway itself reads; everything else is the provider's business."""

    model: str
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    max_output_tokens: int | None = None  # the Responses API's cap
    n: int = 1
    best_of: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream_options: dict[str, Any] | None = None


_OPTIONAL_FIELDS = tuple(f for f in Fields.__struct_fields__ if f != "model")


def read_fields(request: dict[str, Any], *, needs: str) -> Fields:
    """Type-check the gateway's fields; ``needs`` is the field holding the input (messages, prompt, input).

    Drops the gateway's optional fields that are explicitly null from ``request`` (see below).
    """
    if "model" not in request:
        raise bad_request("You must provide a model parameter.", param="model")
    if needs not in request:
        raise bad_request(f"Missing required parameter: '{needs}'.", param=needs)
    # An explicit null means "not given", as OpenAI reads it ("n": null, "stream": null): the null
    # is dropped from the body, so the upstream sees what the client meant.
    for name in _OPTIONAL_FIELDS:
        if name in request and request[name] is None:
            del request[name]
    try:
        fields = msgspec.convert(request, type=Fields, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        param = message.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in message else None
        raise bad_request(f"Invalid request: {message.replace('`$.', '`')}", param=param) from None
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = getattr(fields, name)
        if value is not None and value < 1:
            raise bad_request(f"'{name}' must be at least 1.", param=name)
    if not 1 <= fields.n <= MAX_N:
        raise bad_request(f"'n' must be between 1 and {MAX_N}.", param="n")
    if fields.best_of is not None:
        if needs != "prompt":
            raise bad_request("'best_of' is a /v1/completions parameter.", param="best_of")
        if not fields.n <= fields.best_of <= MAX_BEST_OF:
            raise bad_request(f"'best_of' must be between 'n' and {MAX_BEST_OF}.", param="best_of")
        if fields.stream and fields.best_of > 1:
            raise bad_request("'best_of' above 1 cannot be streamed.", param="best_of")
    if fields.temperature is not None and not 0 <= fields.temperature <= 2:
        raise bad_request("'temperature' must be between 0 and 2.", param="temperature")
    if needs == "messages" and (not isinstance(request["messages"], list) or not request["messages"]):
        raise bad_request("'messages' must be a non-empty array.", param="messages")
    return fields


_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def output_cap(fields: Fields) -> int | None:
    """The client's output cap in the decoded fields (``smaller_cap``), the Responses API's
    ``max_output_tokens`` included."""
    return smaller_cap(fields.max_tokens, fields.max_completion_tokens, fields.max_output_tokens)


def with_output_cap(request: dict[str, Any], cap: int, default: str = "max_tokens") -> dict[str, Any]:
    """``request`` with its output cap set to ``cap``: in each cap field the client used, else in
    ``default`` (``max_tokens``; ``max_output_tokens`` for the Responses API; each adapter then
    sends the field its upstream accepts)."""
    body = dict(request)
    present = [name for name in _CAP_FIELDS if name in request]
    for name in present or [default]:
        body[name] = cap
    return body


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than {limit} bytes.",
        type="invalid_request_error",
        code="request_too_large",
        headers=CLOSE,  # the rest of the body is never read
    )
