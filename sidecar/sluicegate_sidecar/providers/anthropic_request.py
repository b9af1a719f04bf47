"""Anthropic request translation: an OpenAI chat completions request → a Messages request. Pure.

Replies and streams are translated back in ``anthropic``.

Extended thinking (``thinking=True``: requests translated from the Responses API) follows
``reasoning_effort``: ``THINKING_BUDGETS`` tokens of thinking, kept below ``max_tokens`` as Anthropic
requires (thinking is output: ``max_tokens`` is the cap of thinking and visible text together, the
cap the budget reservation was made for; it is never raised for thinking). Thinking is left off
when it cannot be honoured as Anthropic requires: less than 1024 tokens of room, a forced tool
choice, or a tool loop whose last assistant turn came back without its signed thinking block. With
thinking on, ``temperature`` and ``top_k`` are not sent and ``top_p`` only from 0.95 up.
Assistant ``thinking_blocks`` (signed thinking from earlier turns) are sent back first in their turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .base import UnsupportedOperation
from .openai_request import output_cap

DEFAULT_MAX_TOKENS = 4096
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
LEAST_THINKING = 1024  # Anthropic's smallest budget_tokens
_THINKING_TYPES = ("thinking", "redacted_thinking")
# response_format has no Messages equivalent: it becomes an instruction appended to the system prompt.
_JSON_HINT = "Respond with a single valid JSON object and nothing else."


def _fail(message: str) -> UnsupportedOperation:
    return UnsupportedOperation(message)


def _media(url: object) -> dict[str, Any]:
    """An OpenAI image or file URL as an Anthropic ``source``."""
    if not isinstance(url, str):
        raise _fail("an image_url part needs a url string")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64" or not media_type or not data:
            raise _fail("data: URLs must be base64-encoded and name a media type")
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise _fail("image URLs must be data:, http: or https: URLs")


def _blocks(content: object, *, images: bool = True) -> list[dict[str, Any]]:
    """OpenAI message content (a string or parts) as Anthropic content blocks; empty text is dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _fail("message content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise _fail(f"a {kind} part needs a string")
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url" and images:
            image = part.get("image_url")
            block = {
                "type": "image",
                "source": _media(image.get("url") if isinstance(image, dict) else image),
            }
        elif kind == "file" and images and isinstance(part.get("file"), dict):
            block = {"type": "document", "source": _media(part["file"].get("file_data"))}
        else:
            raise _fail(f"anthropic connections do not accept {kind!r} content parts here")
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use(call: object) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _fail("tool_calls entries need a function with a name")
    call_id = call.get("id") if isinstance(call, dict) else None
    if not isinstance(call_id, str):
        raise _fail("tool_calls entries need an id")
    arguments = function.get("arguments") or "{}"
    try:
        arguments_object = msgspec.json.decode(arguments) if isinstance(arguments, str) else arguments
    except msgspec.DecodeError as exc:
        raise _fail("tool call arguments must be a JSON object") from exc
    if not isinstance(arguments_object, dict):
        raise _fail("tool call arguments must be a JSON object")
    return {"type": "tool_use", "id": call_id, "name": function["name"], "input": arguments_object}


def _tool_result(message: Mapping[str, Any]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise _fail("tool messages need a tool_call_id")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        result["content"] = content
    elif content is not None:
        result["content"] = _blocks(content)
    return result


def _thinking_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks") or []
    if not isinstance(blocks, list) or not all(
        isinstance(b, dict) and b.get("type") in _THINKING_TYPES for b in blocks
    ):
        raise _fail("thinking_blocks must be a list of thinking or redacted_thinking blocks")
    return [dict(b) for b in blocks]


def _turns(messages: object, thinking: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """System texts and alternating user/assistant turns (consecutive same-role messages merged);
    with ``thinking``, an assistant message's ``thinking_blocks`` lead its blocks."""
    if not isinstance(messages, list):
        raise _fail("messages must be a list")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system.extend(block["text"] for block in _blocks(message.get("content"), images=False))
            continue
        if role == "user":
            blocks = _blocks(message.get("content"))
        elif role == "assistant":
            blocks = _thinking_blocks(message) if thinking else []
            blocks += _blocks(message.get("content"), images=False)
            blocks.extend(_tool_use(call) for call in message.get("tool_calls") or [])
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            raise _fail(f"anthropic connections do not accept {role!r} messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool_choice(choice: object, parallel: object) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        result: dict[str, Any] | None = {"type": "auto"} if parallel is False else None
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        result = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise _fail("unsupported tool_choice")
    if result is not None and parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _fail("tools must be a list")
    converted = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict):
            raise _fail("anthropic connections accept only function tools")
        entry: dict[str, Any] = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        converted.append(entry)
    return converted


def thinking_budget(effort: object, max_tokens: int) -> int | None:
    """The thinking budget for a reasoning effort under ``max_tokens`` (None: thinking off)."""
    wanted = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if wanted is None:
        return None
    budget = min(wanted, max_tokens - 1)
    return budget if budget >= LEAST_THINKING else None


def _thinking_fits(turns: list[dict[str, Any]], choice: dict[str, Any] | None) -> bool:
    """Anthropic refuses thinking with a forced tool, and in a tool loop whose last assistant turn
    does not start with its thinking block."""
    if choice is not None and choice.get("type") in ("any", "tool"):
        return False
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last is None or not any(b.get("type") == "tool_use" for b in last["content"]):
        return True
    return bool(last["content"][0].get("type") in _THINKING_TYPES)


def messages_body(
    model: str, request: Mapping[str, Any], stream: bool, *, thinking: bool = False
) -> dict[str, Any]:
    """A chat.completions request as a Messages request; ``thinking``: ``reasoning_effort`` turns on
    extended thinking (the Responses API's ``reasoning``; chat requests keep it off)."""
    if request.get("n") not in (None, 1):
        raise _fail("anthropic connections cannot return more than one choice (n)")
    system, turns = _turns(request.get("messages"), thinking)
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        schema = (response_format.get("json_schema") or {}).get("schema")
        hint = _JSON_HINT
        if schema is not None:
            hint += " It must conform to this JSON Schema: " + msgspec.json.encode(schema).decode()
        system.append(hint)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": output_cap(request) or DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        body["system"] = "\n\n".join(system)
    stop = request.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    choice = None
    if request.get("tools"):
        body["tools"] = _tools(request["tools"])
        choice = _tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
    budget = thinking_budget(request.get("reasoning_effort"), body["max_tokens"]) if thinking else None
    if budget is not None and _thinking_fits(turns, choice):
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif thinking:  # signed thinking goes back only while thinking is on
        body["messages"] = _turns(request.get("messages"))[1]
    temperature = request.get("temperature")
    if isinstance(temperature, int | float) and "thinking" not in body:
        body["temperature"] = min(max(float(temperature), 0.0), 1.0)  # OpenAI allows up to 2
    for key in ("top_p", "top_k"):
        value = request.get(key)
        if isinstance(value, int | float) and ("thinking" not in body or (key == "top_p" and value >= 0.95)):
            body[key] = value
    if isinstance(request.get("user"), str):
        body["metadata"] = {"user_id": request["user"]}
    if stream:
        body["stream"] = True
    return body
