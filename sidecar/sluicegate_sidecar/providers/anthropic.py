"""The Anthropic adapter: OpenAI chat completions ⇄ the Messages API, and Messages passed through for
Anthropic-native clients. Pure: no HTTP, no clock (``created`` is 0 in translated replies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .base import (
    BadUpstreamResponse,
    Connection,
    Operation,
    Reply,
    UnsupportedOperation,
    UpstreamErrorInfo,
    UpstreamRequest,
    Usage,
)
from .openai import (
    chunk_event,
    client_wants_usage,
    decode_json,
    error_info,
    openai_body,
    output_cap,
    stream_end,
    usage_object,
)
from .sse import RelayState, event_fields

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# response_format has no Messages equivalent: it becomes an instruction appended to the system prompt.
_JSON_HINT = "Respond with a single valid JSON object and nothing else."


def _fail(message: str) -> UnsupportedOperation:
    return UnsupportedOperation(message)


# --- chat request → Messages request -----------------------------------------------------------


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


def _turns(messages: object) -> tuple[list[str], list[dict[str, Any]]]:
    """System texts and alternating user/assistant turns (consecutive same-role messages merged)."""
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
            blocks = _blocks(message.get("content"), images=False)
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


def messages_body(model: str, request: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """A chat.completions request as a Messages request."""
    if request.get("n") not in (None, 1):
        raise _fail("anthropic connections cannot return more than one choice (n)")
    system, turns = _turns(request.get("messages"))
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
    temperature = request.get("temperature")
    if isinstance(temperature, int | float):
        body["temperature"] = min(max(float(temperature), 0.0), 1.0)  # OpenAI allows up to 2
    for key in ("top_p", "top_k"):
        if isinstance(request.get(key), int | float):
            body[key] = request[key]
    if request.get("tools"):
        body["tools"] = _tools(request["tools"])
        choice = _tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
    if isinstance(request.get("user"), str):
        body["metadata"] = {"user_id": request["user"]}
    if stream:
        body["stream"] = True
    return body


# --- Messages reply → chat.completion ----------------------------------------------------------


def _usage(raw: object, previous: Usage | None = None) -> Usage:
    """Usage from a Messages ``usage`` object; fields it lacks keep their ``previous`` values."""
    fields = raw if isinstance(raw, dict) else {}
    base = previous or Usage(0, 0)

    def value(key: str, default: int) -> int:
        number = fields.get(key)
        return number if isinstance(number, int) else default

    read = value("cache_read_input_tokens", base.cached_input_tokens)
    written = value("cache_creation_input_tokens", base.cache_write_tokens)
    plain = value("input_tokens", base.input_tokens - base.cached_input_tokens - base.cache_write_tokens)
    return Usage(plain + read + written, value("output_tokens", base.output_tokens), read, written)


def chat_completion(message: Mapping[str, Any], model: str) -> tuple[dict[str, Any], Usage, str]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            arguments = msgspec.json.encode(block.get("input") or {}).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    finish = _FINISH.get(message.get("stop_reason") or "", "stop")
    usage = _usage(message.get("usage"))
    completion = {
        "id": message.get("id") or "msg",
        "object": "chat.completion",
        "created": 0,
        "model": message.get("model") or model,
        "choices": [{"index": 0, "message": reply, "finish_reason": finish, "logprobs": None}],
        "usage": usage_object(usage),
    }
    return completion, usage, finish


# --- streams -----------------------------------------------------------------------------------


class _Relay(RelayState):
    """Reads Messages stream events; subclasses decide what the client sees."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model = model

    def feed(self, data: bytes) -> bytes:
        try:
            return b"".join([self._event(raw, _decode_event(raw)) for raw in self._splitter.feed(data)])
        except (AttributeError, TypeError) as exc:
            raise BadUpstreamResponse("upstream sent a malformed Messages stream event") from exc

    def finish(self) -> bytes:
        self._splitter.rest()  # an incomplete last event is dropped, as SSE requires
        return b""

    def _read(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._model = message.get("model") or self._model
            self._usage = _usage(message.get("usage"))
        elif kind == "message_delta":
            self._usage = _usage(event.get("usage"), self._usage)
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            text = delta.get("text") or delta.get("partial_json") or delta.get("thinking") or ""
            self._output_chars += len(text)
        elif kind == "message_stop":
            self._ended = True
        elif kind == "error":
            error = event.get("error") or {}
            self._error = error_info(500, error.get("message"), error.get("type"))

    def _event(self, raw: bytes, event: dict[str, Any] | None) -> bytes:
        raise NotImplementedError


def _decode_event(raw: bytes) -> dict[str, Any] | None:
    _, payload = event_fields(raw)
    if payload is None:
        return None
    event = decode_json(payload)
    if not isinstance(event, dict):
        raise BadUpstreamResponse("upstream sent a stream event that is not a JSON object")
    return event


class MessagesPassthroughRelay(_Relay):
    """Anthropic SSE to an Anthropic-native client, unchanged."""

    def _event(self, raw: bytes, event: dict[str, Any] | None) -> bytes:
        if event is not None and not self._ended:
            self._read(event)
        return raw


class ChatRelay(_Relay):
    """Anthropic SSE → OpenAI ``chat.completion.chunk`` SSE."""

    def __init__(self, model: str, client_wants_usage: bool) -> None:
        super().__init__(model)
        self._id = "msg"
        self._wants_usage = client_wants_usage
        self._tool_index: dict[int, int] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return chunk_event(self._id, self._model, [choice])

    def _event(self, raw: bytes, event: dict[str, Any] | None) -> bytes:
        if event is None or self._ended or self._error is not None:
            return b""
        self._read(event)
        kind = event.get("type")
        if kind == "message_start":
            self._id = (event.get("message") or {}).get("id") or self._id
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index.setdefault(event.get("index", 0), len(self._tool_index))
                call = {"index": index, "id": block.get("id"), "type": "function"}
                call["function"] = {"name": block.get("name"), "arguments": ""}
                return self._chunk({"tool_calls": [call]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return self._chunk({"content": delta["text"]})
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                index = self._tool_index.get(event.get("index", 0), 0)
                return self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]}
                )
        elif kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                return self._chunk({}, _FINISH.get(reason, "stop"))
        elif kind == "message_stop":
            return stream_end(self._usage, self._id, self._model, self._wants_usage)
        return b""


# --- the adapter -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnthropicAdapter:
    provider: str = "anthropic"

    def build(
        self,
        op: Operation,
        conn: Connection,
        model: str,
        request: Mapping[str, Any],
        *,
        stream: bool,
    ) -> UpstreamRequest:
        if op == "chat":
            body = messages_body(model, request, stream)
        elif op == "messages":
            body = openai_body(request, model, stream, stream_usage_option=False)
        else:
            raise _fail(f"anthropic connections do not serve /v1/{op}")
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if conn.api_key:
            headers["x-api-key"] = conn.api_key
        url = (conn.base_url or ANTHROPIC_BASE_URL).rstrip("/") + "/v1/messages"
        return UpstreamRequest("POST", url, headers, msgspec.json.encode(body))

    def parse(self, op: Operation, model: str, body: bytes) -> Reply:
        message = decode_json(body)
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise BadUpstreamResponse("upstream reply is not a Messages response")
        if op == "messages":
            reason = message.get("stop_reason")
            return Reply(body, _usage(message.get("usage")), reason if isinstance(reason, str) else None)
        try:
            completion, usage, finish = chat_completion(message, model)
        except (AttributeError, TypeError) as exc:
            raise BadUpstreamResponse("upstream reply is not a Messages response") from exc
        return Reply(msgspec.json.encode(completion), usage, finish)

    def relay(self, op: Operation, model: str, request: Mapping[str, Any]) -> _Relay:
        if op == "messages":
            return MessagesPassthroughRelay(model)
        if op == "chat":
            return ChatRelay(model, client_wants_usage(request))
        raise _fail(f"anthropic connections do not serve /v1/{op}")

    def parse_error(self, status: int, body: bytes) -> UpstreamErrorInfo:
        payload = decode_json(body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return error_info(status, None)
        kind = error.get("type")
        return error_info(status, error.get("message"), kind, credentials=kind == "authentication_error")
