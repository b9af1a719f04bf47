"""The Responses API ⇄ chat completions, for upstreams that speak no Responses API (Anthropic, Gemini,
the offline mock): a Responses request becomes a chat request (which each adapter already
translates), and a chat.completion becomes a Response object. Pure: no HTTP, no clock
(``created_at`` is 0).

Stateless: such upstreams keep no responses, so ``previous_response_id``, ``conversation`` and
item references are refused (400) and ``store`` is a no-op (the reply says ``"store": false``).

Reasoning crosses the chat hop as Anthropic's thinking blocks (``responses_reasoning``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .base import UnsupportedOperation, Usage
from .responses_reasoning import Origin, reasoning_item, thinking_block

_DEFAULTS: Mapping[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "reasoning": {"effort": None, "summary": None},
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}
_ECHOED = tuple(_DEFAULTS)  # request fields a Response repeats
_STATEFUL = ("previous_response_id", "conversation", "prompt")
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _fail(message: str) -> UnsupportedOperation:
    return UnsupportedOperation(message)


def refuse_background(request: Mapping[str, Any]) -> None:
    """``background: true`` is refused everywhere: the sidecar meters what it sees finish."""
    if request.get("background") is True:
        raise _fail(
            "background responses are not served: the sidecar charges a response as it finishes, "
            "and a background one finishes out of its sight. Send it without 'background'."
        )


def refuse_stateful(request: Mapping[str, Any], provider: str) -> None:
    for field in _STATEFUL:
        if request.get(field) is not None:
            raise _fail(
                f"'{field}' needs a provider that keeps responses; {provider} connections are served "
                "statelessly. Send the whole conversation in 'input' instead."
            )


# --- request: Responses → chat ---------------------------------------------------------------


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or part.get("refusal") or "") for part in content if isinstance(part, dict)
        )
    return ""


def _part(part: object) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _fail("each content part of an input message must be an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal", "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _fail("input_image parts need an 'image_url' here (file ids need OpenAI's file store)")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str):
            raise _fail("input_file parts need 'file_data' here (file ids need OpenAI's file store)")
        file = {"file_data": data, "filename": part.get("filename") or "file"}
        return {"type": "file", "file": file}
    raise _fail(f"input content of type {kind!r} cannot be translated for this provider")


def _message(item: Mapping[str, Any]) -> dict[str, Any]:
    role = item.get("role")
    content = item.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text_of(content)}
    if role == "assistant":
        return {"role": "assistant", "content": _text_of(content)}
    if role != "user":
        raise _fail(f"input messages cannot have the role {role!r}")
    if isinstance(content, str):
        return {"role": "user", "content": content}
    if not isinstance(content, list):
        raise _fail("a message's 'content' must be a string or an array of parts")
    return {"role": "user", "content": [_part(part) for part in content]}


def _call(item: Mapping[str, Any]) -> dict[str, Any]:
    arguments = item.get("arguments")
    function = {"name": item.get("name"), "arguments": arguments if isinstance(arguments, str) else "{}"}
    return {"id": item.get("call_id"), "type": "function", "function": function}


def _bare_thinking(message: Mapping[str, Any] | None) -> bool:
    """An assistant message holding only thinking so far (what follows in the turn joins it)."""
    return (
        message is not None
        and message["role"] == "assistant"
        and "thinking_blocks" in message
        and not message.get("content")
        and not message.get("tool_calls")
    )


def _messages(request: Mapping[str, Any], thinking: Origin | None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = request.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    items = request.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _fail("'input' must be a string or an array of input items")
    for item in items:
        if not isinstance(item, dict):
            raise _fail("each input item must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            message = _message(item)
            if message["role"] == "assistant" and _bare_thinking(messages[-1] if messages else None):
                messages[-1]["content"] = message["content"]
            else:
                messages.append(message)
        elif kind == "function_call":
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and not _text_of(last.get("content")):
                last.setdefault("tool_calls", []).append(_call(item))
                last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [_call(item)]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output)
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "reasoning":
            block = thinking_block(item, thinking) if thinking else None
            if block is None:
                continue  # OpenAI's own reasoning state: another provider cannot read it
            if _bare_thinking(messages[-1] if messages else None):
                messages[-1]["thinking_blocks"].append(block)
            else:
                messages.append({"role": "assistant", "content": None, "thinking_blocks": [block]})
        elif kind == "item_reference":
            raise _fail("'item_reference' input items need a provider that keeps responses")
        else:
            raise _fail(f"input items of type {kind!r} cannot be translated for this provider")
    if not any(m["role"] != "system" for m in messages):
        raise _fail("'input' holds no message to answer")
    return messages


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _fail("'tools' must be an array")
    converted = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _fail(f"only function tools can be translated for this provider (got {kind!r})")
        function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {"type": "object"}}
        for key in ("description", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: object) -> object:
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise _fail(f"tool_choice of type {choice.get('type')!r} cannot be translated")
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(text: object) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _fail(f"text.format of type {fmt.get('type')!r} cannot be translated")


def chat_request(
    request: Mapping[str, Any], provider: str, *, stream: bool, thinking: Origin | None = None
) -> dict[str, Any]:
    """A Responses API request as a chat.completions request (for translating adapters);
    ``thinking``: input reasoning items sealed by that origin become assistant ``thinking_blocks``."""
    refuse_background(request)
    refuse_stateful(request, provider)
    chat: dict[str, Any] = {"model": request.get("model"), "messages": _messages(request, thinking)}
    if request.get("tools"):
        chat["tools"] = _tools(request["tools"])
        if request.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(request["tool_choice"])
        if isinstance(request.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = request["parallel_tool_calls"]
    response_format = _response_format(request.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    if isinstance(request.get("max_output_tokens"), int):
        chat["max_tokens"] = request["max_output_tokens"]
    for key in ("temperature", "top_p", "user"):
        if request.get(key) is not None:
            chat[key] = request[key]
    effort = request.get("reasoning")
    if isinstance(effort, dict) and isinstance(effort.get("effort"), str):
        chat["reasoning_effort"] = effort["effort"]
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


# --- reply: chat.completion → Response -------------------------------------------------------


def usage_json(usage: Usage) -> dict[str, Any]:
    """``usage`` in the Response shape (input tokens include cached reads and cache writes)."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def usage_from_chat(usage: object) -> Usage | None:
    """A chat ``usage`` object as ``Usage`` (None when absent or malformed)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    details = usage.get("completion_tokens_details")
    thought = details.get("reasoning_tokens") if isinstance(details, dict) else None
    reasoning = thought if isinstance(thought, int) and 0 <= thought <= completion else 0
    return Usage(prompt, completion, cached if isinstance(cached, int) else 0, reasoning_tokens=reasoning)


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [text_part(text)] if status == "completed" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def response_object(
    response_id: str,
    model: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    finish: str | None,
    request: Mapping[str, Any],
    *,
    status: str | None = None,
) -> dict[str, Any]:
    """A Response object; ``status`` None derives it from the chat ``finish`` reason."""
    incomplete = _INCOMPLETE.get(finish or "")
    if status is None:
        status = "incomplete" if incomplete else "completed"
    echoed = {key: request.get(key, _DEFAULTS[key]) for key in _ECHOED}
    if echoed["reasoning"] is None:
        echoed["reasoning"] = _DEFAULTS["reasoning"]
    return {
        "id": response_id,
        "object": "response",
        "created_at": 0,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete and status == "incomplete" else None,
        "model": model,
        "output": output,
        "previous_response_id": None,
        "service_tier": "default",
        "store": False,
        **echoed,
        "usage": usage_json(usage) if usage is not None else None,
    }


def response_id(chat_id: object) -> str:
    return "resp_" + (chat_id if isinstance(chat_id, str) and chat_id else "sluicegate")


def response_from_chat(completion: Mapping[str, Any], model: str, usage: Usage | None) -> dict[str, Any]:
    """A chat.completion (one choice) as a Response object."""
    rid = response_id(completion.get("id"))
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = [
        reasoning_item(f"rs_{rid[5:]}_{n}", block)
        for n, block in enumerate(message.get("thinking_blocks") or ())
        if isinstance(block, dict)
    ]
    text = message.get("content")
    calls = message.get("tool_calls") or []
    if (isinstance(text, str) and text) or not calls:
        output.append(message_item(f"msg_{rid[5:]}", text if isinstance(text, str) else ""))
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        call_id = call.get("id") or f"call_{n}"
        arguments = function.get("arguments")
        output.append(
            call_item(
                f"fc_{rid[5:]}_{n}",
                call_id,
                function.get("name") or "",
                arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode(),
            )
        )
    model_name = completion.get("model")
    return response_object(
        rid,
        model_name if isinstance(model_name, str) and model_name else model,
        output,
        usage,
        choice.get("finish_reason"),
        {},
    )
