"""OpenAI's Responses API (POST /v1/responses) for the fake OpenAI and Azure servers (test support).

Wire format as OpenAI sends it: a Response object with ``output`` items (message / function_call,
a reasoning item for reasoning models) and ``usage`` (``input_tokens_details.cached_tokens``,
``output_tokens_details.reasoning_tokens``); streams are typed events (``event: <type>`` and a
``data`` object with ``type`` and ``sequence_number``): response.created, response.in_progress,
output_item.added, content_part.added, output_text.delta/done, function_call_arguments.delta/done,
content_part.done, output_item.done, and response.completed (or response.incomplete at the
output cap) carrying the usage. A mid-stream failure is an ``error`` event. A ``max_output_tokens``
below 16 is refused with OpenAI's 400.

The fake calls the named (or first) function tool unless ``tool_choice`` is "none" or the input
ends with a ``function_call_output`` (then it answers in text, as a model does after a tool result).
A request naming ``reasoning`` gets a reasoning item first and reports ``reasoning_tokens``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.fakes_server import FakeUsage, Plan, json_plan

REASONING_TOKENS = 4
MIN_OUTPUT_TOKENS = 16  # OpenAI refuses a smaller ``max_output_tokens`` with a 400


def below_minimum(limit: int) -> Plan:
    """OpenAI's 400 for a ``max_output_tokens`` under its minimum."""
    message = (
        "Invalid 'max_output_tokens': integer below minimum value. "
        f"Expected a value >= {MIN_OUTPUT_TOKENS}, but got {limit} instead."
    )
    error = {"message": message, "type": "invalid_request_error", "param": "max_output_tokens",
             "code": "integer_below_min_value"}  # fmt: skip
    return json_plan(400, {"error": error})


def _frame(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\n".encode() + b"data: " + json.dumps(payload).encode() + b"\n\n"


def error_frame(message: str, sequence_number: int = 0) -> bytes:
    """OpenAI's in-stream error event."""
    payload = {"type": "error", "code": "server_error", "message": message, "param": None}
    return _frame(payload | {"sequence_number": sequence_number})


def usage_json(usage: FakeUsage, reasoning: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _tool(body: dict[str, Any]) -> str | None:
    names = [t["name"] for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    items = body.get("input")
    answered = isinstance(items, list) and items and items[-1].get("type") == "function_call_output"
    if not names or choice == "none" or (answered and choice in (None, "auto")):
        return None
    if isinstance(choice, dict):
        return str(choice["name"])
    return names[0]


def _text_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def responses_answer(
    body: dict[str, Any],
    number: int,
    pieces: list[str],
    tool_input: dict[str, Any],
    usage_for: Any,
) -> tuple[Plan, FakeUsage]:
    """The reply to one Responses request; ``usage_for(pieces)`` gives the usage it reports."""
    tool = _tool(body)
    limit = body.get("max_output_tokens")
    status, incomplete = "completed", None
    if tool is not None:
        arguments = json.dumps(tool_input)
        pieces = [arguments[i : i + 10] for i in range(0, len(arguments), 10)]
    elif isinstance(limit, int) and len(pieces) > limit:
        pieces, status, incomplete = pieces[:limit], "incomplete", {"reason": "max_output_tokens"}
    usage: FakeUsage = usage_for(pieces)
    reasoning = REASONING_TOKENS if body.get("reasoning") else 0
    rid = f"resp_fake{number:06d}"
    response: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": limit,
        "model": body.get("model", "gpt-4o-mini"),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
    ]
    output: list[dict[str, Any]] = []
    if reasoning:
        item = {"id": f"rs_fake{number:06d}", "type": "reasoning", "summary": [], "encrypted_content": None}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
        output.append(item)
    index = len(output)
    if tool is None:
        item_id = f"msg_fake{number:06d}"
        text = "".join(pieces)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append({"type": "response.output_item.added", "output_index": index,
                       "item": _text_item(item_id, "", "in_progress")})  # fmt: skip
        events.append({"type": "response.content_part.added", **where, "part": part})
        events += [
            {"type": "response.output_text.delta", **where, "delta": p, "logprobs": []} for p in pieces
        ]
        events.append({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
        events.append({"type": "response.content_part.done", **where, "part": part | {"text": text}})
        done = _text_item(item_id, text, "completed")
    else:
        item_id, call_id = f"fc_fake{number:06d}", f"call_fake{number:06d}"
        where = {"item_id": item_id, "output_index": index}
        events.append({"type": "response.output_item.added", "output_index": index,
                       "item": _call_item(item_id, call_id, tool, "", "in_progress")})  # fmt: skip
        events += [{"type": "response.function_call_arguments.delta", **where, "delta": p} for p in pieces]
        arguments = "".join(pieces)
        events.append({"type": "response.function_call_arguments.done", **where, "name": tool,
                       "arguments": arguments})  # fmt: skip
        done = _call_item(item_id, call_id, tool, arguments, "completed")
    events.append({"type": "response.output_item.done", "output_index": index, "item": done})
    output.append(done)
    final = response | {
        "status": status,
        "incomplete_details": incomplete,
        "output": output,
        "usage": usage_json(usage, reasoning),
    }
    kind = "response.completed" if status == "completed" else "response.incomplete"
    events.append({"type": kind, "response": final})
    if body.get("stream") is not True:
        return json_plan(200, final), usage
    frames = tuple(_frame(event | {"sequence_number": n}) for n, event in enumerate(events))
    return Plan(200, "text/event-stream; charset=utf-8", frames, streamed=True), usage
