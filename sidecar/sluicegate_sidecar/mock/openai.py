"""The OpenAI request fields the mock provider reads, checked as OpenAI checks them. Pure.

Each reader raises ``BadRequest`` (a 400 with the parameter at fault) for what OpenAI refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .content import JSON_OBJECT_SCHEMA, ToolMode, tool_to_call

MAX_CHOICES = 128


class BadRequest(Exception):
    """A request OpenAI refuses with 400; ``args`` are the message and the parameter at fault."""


def model_name(request: Mapping[str, Any]) -> str:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("You must provide a model parameter.", "model")
    return model


def stream_options(request: Mapping[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage), rejecting ``stream_options`` without ``stream`` as OpenAI does."""
    stream = request.get("stream")
    stream = False if stream is None else stream  # null is "not given", as OpenAI reads it
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", "stream")
    options = request.get("stream_options")
    if options is not None and not stream:
        raise BadRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )
    include = isinstance(options, dict) and options.get("include_usage") is True
    return stream, include


def max_tokens(request: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer.", name)
        return value
    return None


def choice_count(request: Mapping[str, Any]) -> int:
    n = request.get("n", 1)
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES:
        raise BadRequest(f"'n' must be an integer between 1 and {MAX_CHOICES}.", "n")
    return n


def chat_tool(request: Mapping[str, Any], messages: list[Any]) -> Mapping[str, Any] | None:
    """The function this reply calls (see ``mock_content.tool_to_call``)."""
    tools = [t.get("function") for t in request.get("tools") or () if isinstance(t, dict)]
    functions = [f for f in tools if isinstance(f, dict) and isinstance(f.get("name"), str)]
    choice = request.get("tool_choice")
    mode: ToolMode = "auto"
    name = None
    if choice in ("none", "required"):
        mode = choice
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        mode, name = "named", choice["function"].get("name")
    last = messages[-1] if messages else None
    user_turn = isinstance(last, dict) and last.get("role") == "user"
    return tool_to_call(functions, mode, name, user_turn)


def response_schema(request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JSON Schema ``response_format`` asks the reply to follow (JSON mode: an object)."""
    fmt = request.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("'response_format.json_schema.schema' must be an object.", "response_format")
        return schema
    return JSON_OBJECT_SCHEMA if fmt.get("type") == "json_object" else None


def chat_logprobs(request: Mapping[str, Any]) -> int | None:
    """How many alternatives per token (``top_logprobs``), or None when logprobs are not asked for."""
    if request.get("logprobs") is not True:
        return None
    top = request.get("top_logprobs", 0)
    if top is None:
        return 0
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
        raise BadRequest("'top_logprobs' must be an integer between 0 and 20.", "top_logprobs")
    return top


def delta_logprobs(entries: list[dict[str, Any]] | None, k: int) -> dict[str, Any] | None:
    """The logprobs of stream delta ``k`` (delta 0 is the role; delta k carries token k - 1)."""
    if entries is None or k == 0 or k > len(entries):
        return None
    return {"content": [entries[k - 1]], "refusal": None}
