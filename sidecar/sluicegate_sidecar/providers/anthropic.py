"""The Anthropic adapter: OpenAI chat completions ⇄ the Messages API (requests translated in
``anthropic_request``, replies and streams here), and Messages passed through for Anthropic-native
clients. Pure: no HTTP, no clock (``created`` is 0 in translated replies).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .anthropic_request import messages_body
from .base import (
    NO_HEADERS,
    BadUpstreamResponse,
    Connection,
    Operation,
    Reply,
    UnsupportedOperation,
    UpstreamErrorInfo,
    UpstreamRequest,
    Usage,
)
from .errorinfo import error_info
from .keyscrub import NO_KEY, KeyScrubber
from .openai import chunk_event, decode_json, stream_end, usage_object
from .openai_request import client_wants_usage, openai_body
from .responses_bridge import BridgedResponsesRelay, responses_reply
from .responses_chat import chat_request
from .sse import RelayState, event_fields
from .usagefields import UsageReader, sticky

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# --- Messages reply → chat.completion ----------------------------------------------------------


def _usage(raw: object, previous: Usage | None = None) -> Usage:
    """Usage from a Messages ``usage`` object. A reply's (and message_start's) always has
    ``input_tokens`` and ``output_tokens``; a message_delta's fields it lacks keep their ``previous``
    values. Cache counts are optional (absent or null: 0). Bad counts are flagged, never raised."""
    reader = UsageReader(raw)
    base = previous or Usage(0, 0)
    later = previous is not None
    read = reader.count("cache_read_input_tokens", base.cached_input_tokens)
    written = reader.count("cache_creation_input_tokens", base.cache_write_tokens)
    plain_before = base.input_tokens - base.cached_input_tokens - base.cache_write_tokens
    plain = reader.count("input_tokens", plain_before if later else None)
    output = reader.count("output_tokens", base.output_tokens if later else None)
    usage = Usage(plain + read + written, output, read, written)
    inputs = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    built = reader.build(
        usage, inputs, ("output_tokens",), ("cache_read_input_tokens",), ("cache_creation_input_tokens",)
    )
    return sticky(built, previous) or built


def _reply_usage(message: Mapping[str, Any]) -> Usage | None:
    """A reply's usage; None when it has none (fault 27: charged as unknown, not as zero)."""
    raw = message.get("usage")
    return None if raw is None else _usage(raw)


def chat_completion(message: Mapping[str, Any], model: str) -> tuple[dict[str, Any], Usage | None, str]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []  # extended thinking, enabled for translated Responses only
    for block in message.get("content") or []:
        if block.get("type") in ("thinking", "redacted_thinking"):
            thinking.append(dict(block))
        elif block.get("type") == "text":
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
    if thinking:
        reply["thinking_blocks"] = thinking
    finish = _FINISH.get(message.get("stop_reason") or "", "stop")
    usage = _reply_usage(message)
    completion = {
        "id": message.get("id") or "msg",
        "object": "chat.completion",
        "created": 0,
        "model": message.get("model") or model,
        "choices": [{"index": 0, "message": reply, "finish_reason": finish, "logprobs": None}],
        "usage": usage_object(usage or Usage(0, 0)),
    }
    return completion, usage, finish


# --- streams -----------------------------------------------------------------------------------


class _Relay(RelayState):
    """Reads Messages stream events; subclasses decide what the client sees."""

    def __init__(self, model: str, scrubber: KeyScrubber = NO_KEY) -> None:
        super().__init__()
        self._model = model
        self._scrubber = scrubber

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
            if message.get("usage") is not None:
                self._usage = _usage(message["usage"])
        elif kind == "message_delta":
            if event.get("usage") is not None:
                self._usage = _usage(event["usage"], self._usage)
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            text = delta.get("text") or delta.get("partial_json") or delta.get("thinking") or ""
            self._output_chars += len(text)
        elif kind == "message_stop":
            self._ended = True
        elif kind == "error":
            error = event.get("error") or {}
            self._error = error_info(500, error.get("message"), error.get("type"), scrubber=self._scrubber)

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
    """Anthropic SSE to an Anthropic-native client, unchanged but for error events: those are
    rebuilt from the fields ``error_info`` made safe (no fragment of the connection's key)."""

    def _event(self, raw: bytes, event: dict[str, Any] | None) -> bytes:
        if event is not None and (event.get("type") == "error" or not self._ended):
            self._read(event)
            if event.get("type") == "error" and self._error is not None:
                error = {"type": self._error.code or self._error.type, "message": self._error.message}
                payload = msgspec.json.encode({"type": "error", "error": error})
                return b"event: error\ndata: " + payload + b"\n\n"
        return raw


class ChatRelay(_Relay):
    """Anthropic SSE → OpenAI ``chat.completion.chunk`` SSE."""

    def __init__(self, model: str, client_wants_usage: bool, scrubber: KeyScrubber = NO_KEY) -> None:
        super().__init__(model, scrubber)
        self._id = "msg"
        self._wants_usage = client_wants_usage
        self._tool_index: dict[int, int] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return chunk_event(self._id, self._model, [choice])

    def _thinking(self, index: object, block: dict[str, Any]) -> bytes:
        """A thinking block's start or delta as ``thinking_blocks`` keyed by the block's index."""
        return self._chunk({"thinking_blocks": [{"index": index, "type": "thinking", **block}]})

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
            if block.get("type") in ("thinking", "redacted_thinking"):
                return self._thinking(event.get("index", 0), dict(block))
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "thinking_delta":
                return self._thinking(event.get("index", 0), {"thinking": delta.get("thinking") or ""})
            if delta.get("type") == "signature_delta":
                return self._thinking(event.get("index", 0), {"signature": delta.get("signature") or ""})
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

# The client headers Anthropic defines for clients, forwarded as sent when well-formed (a
# malformed value is dropped, never passed on: header injection, FAULTS 3). The version is the
# client's only on passthrough: translated chat is written for ANTHROPIC_VERSION.
_BETA = re.compile(r"[A-Za-z0-9._-]{1,100}(?:\s*,\s*[A-Za-z0-9._-]{1,100}){0,31}")
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


def forwarded_headers(client_headers: Mapping[str, str], *, passthrough: bool) -> dict[str, str]:
    """``anthropic-beta`` (and on passthrough ``anthropic-version``) from the client, if well-formed."""
    out: dict[str, str] = {}
    beta = client_headers.get("anthropic-beta", "").strip()
    if beta and _BETA.fullmatch(beta):
        out["anthropic-beta"] = beta
    version = client_headers.get("anthropic-version", "").strip()
    if passthrough and _VERSION.fullmatch(version):
        out["anthropic-version"] = version
    return out


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
        client_headers: Mapping[str, str] = NO_HEADERS,
    ) -> UpstreamRequest:
        if op == "responses":  # translated through chat (responses_chat), reasoning as thinking
            chat = chat_request(request, self.provider, stream=stream, thinking="anthropic")
            body = messages_body(model, chat, stream, thinking=True)
        elif op == "chat":
            body = messages_body(model, request, stream)
        elif op in ("messages", "count_tokens"):
            body = openai_body(request, model, stream and op == "messages", stream_usage_option=False)
        else:
            raise UnsupportedOperation(f"anthropic connections do not serve /v1/{op}")
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        headers.update(forwarded_headers(client_headers, passthrough=op not in ("chat", "responses")))
        if conn.api_key:
            headers["x-api-key"] = conn.api_key
        path = "/v1/messages/count_tokens" if op == "count_tokens" else "/v1/messages"
        url = (conn.base_url or ANTHROPIC_BASE_URL).rstrip("/") + path
        return UpstreamRequest("POST", url, headers, msgspec.json.encode(body))

    def parse(self, op: Operation, model: str, body: bytes) -> Reply:
        if op == "responses":
            return responses_reply(self.parse("chat", model, body), model)
        message = decode_json(body)
        if op == "count_tokens":
            if not isinstance(message, dict) or not isinstance(message.get("input_tokens"), int):
                raise BadUpstreamResponse("upstream reply is not a token count")
            return Reply(body, None)
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise BadUpstreamResponse("upstream reply is not a Messages response")
        if op == "messages":
            reason = message.get("stop_reason")
            return Reply(body, _reply_usage(message), reason if isinstance(reason, str) else None)
        try:
            completion, usage, finish = chat_completion(message, model)
        except (AttributeError, TypeError) as exc:
            raise BadUpstreamResponse("upstream reply is not a Messages response") from exc
        return Reply(msgspec.json.encode(completion), usage, finish)

    def relay(
        self, op: Operation, model: str, request: Mapping[str, Any], *, scrubber: KeyScrubber = NO_KEY
    ) -> _Relay | BridgedResponsesRelay:
        if op == "responses":
            chat = chat_request(request, self.provider, stream=True)
            return BridgedResponsesRelay(self.relay("chat", model, chat, scrubber=scrubber), model, request)
        if op == "messages":
            return MessagesPassthroughRelay(model, scrubber)
        if op == "chat":
            return ChatRelay(model, client_wants_usage(request), scrubber)
        raise UnsupportedOperation(f"anthropic connections do not serve /v1/{op}")

    def parse_error(self, status: int, body: bytes, *, scrubber: KeyScrubber = NO_KEY) -> UpstreamErrorInfo:
        payload = decode_json(body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return error_info(status, None)
        kind = error.get("type")
        credentials = kind == "authentication_error"
        return error_info(status, error.get("message"), kind, credentials=credentials, scrubber=scrubber)
