"""The mock provider's Anthropic side: Messages replies and their event streams, and token counts,
as the Messages API shapes them. Pure: a function of the request and its digest (``mock_content``
decides what is said; this module only speaks the protocol).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from .content import ToolMode, estimate_tokens, generate_choice, tool_to_call

_STOP = {"tool_calls": "tool_use", "length": "max_tokens", "stop": "end_turn"}


class MessagesError(Exception):
    """A request the Messages API refuses with 400; ``args[0]`` is its message."""


def _text_of(value: object) -> str:
    """Every string inside a content value (text blocks, tool inputs and results), joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        return " ".join(_text_of(v) for k, v in value.items() if k not in ("type", "id", "cache_control"))
    return ""


def input_tokens(request: Mapping[str, Any]) -> int:
    """About what Anthropic counts: the messages, the system prompt and the tool definitions."""
    total = 3 + estimate_tokens(_text_of(request.get("system")))
    for message in request.get("messages") or []:
        total += 3 + estimate_tokens(_text_of(message.get("content") if isinstance(message, dict) else ""))
    tools = request.get("tools")
    if tools:
        total += estimate_tokens(msgspec.json.encode(tools).decode())
    return total


def _validate(request: Mapping[str, Any], *, counting: bool) -> list[Any]:
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise MessagesError("model: Field required")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MessagesError("messages: Field required (a non-empty list)")
    if not counting:
        cap = request.get("max_tokens")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise MessagesError("max_tokens: Field required (a positive integer)")
    return messages


def count_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    """The body of ``POST /v1/messages/count_tokens``."""
    _validate(request, counting=True)
    return {"input_tokens": input_tokens(request)}


def _tool(request: Mapping[str, Any], messages: list[Any]) -> Mapping[str, Any] | None:
    """The custom tool this reply calls (server tools, which have no input_schema, are never called)."""
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    functions = [{"name": t.get("name"), "parameters": t.get("input_schema")} for t in tools]
    functions = [f for f in functions if isinstance(f["name"], str)]
    choice = request.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else "auto"
    modes: dict[object, ToolMode] = {"auto": "auto", "none": "none", "any": "required", "tool": "named"}
    mode = modes.get(kind, "auto")
    name = choice.get("name") if isinstance(choice, dict) else None
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    last = turns[-1] if turns else {}  # Claude Code may end with a "system" message: it is no turn
    content = last.get("content")
    answered = isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )
    return tool_to_call(functions, mode, name, last.get("role") == "user" and not answered)


def _output_schema(request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Structured outputs: ``output_format`` (or ``output_config.format``) of type json_schema."""
    fmt = request.get("output_format")
    config = request.get("output_config")
    if fmt is None and isinstance(config, dict):
        fmt = config.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]  # type: ignore[no-any-return]
    return None


def messages_reply(request: Mapping[str, Any], digest: bytes) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The Message ``POST /v1/messages`` answers, and the pieces its stream sends it in."""
    messages = _validate(request, counting=False)
    tool = _tool(request, messages)
    choice = generate_choice(digest, 0, request["max_tokens"], tool, _output_schema(request))
    block: dict[str, Any]
    if choice.tool_name is not None:
        call_id = "toolu_" + hashlib.sha256(digest + choice.text.encode()).hexdigest()[:24]
        arguments = msgspec.json.decode(choice.text)
        block = {"type": "tool_use", "id": call_id, "name": choice.tool_name, "input": arguments}
    else:
        block = {"type": "text", "text": choice.text}
    message = {
        "id": "msg_" + digest.hex()[:24],
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": [block],
        "stop_reason": _STOP[choice.finish_reason],
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens(request),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": choice.completion_tokens,
            "service_tier": "standard",
        },
    }
    return message, choice.pieces


def messages_sse(message: dict[str, Any], pieces: tuple[str, ...]) -> tuple[bytes, ...]:
    """The SSE frames of ``message`` streamed: message_start, the block's start, deltas and stop,
    message_delta (stop reason, output tokens), message_stop."""
    return tuple(
        f"event: {e['type']}\ndata: ".encode() + msgspec.json.encode(e) + b"\n\n"
        for e in _events(message, pieces)
    )


def _events(message: dict[str, Any], pieces: tuple[str, ...]) -> list[dict[str, Any]]:
    block = message["content"][0]
    usage = message["usage"]
    started = message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
    if block["type"] == "tool_use":
        opening = block | {"input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
    else:
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
    return [
        {"type": "message_start", "message": started},
        {"type": "content_block_start", "index": 0, "content_block": opening},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
        {"type": "message_stop"},
    ]
