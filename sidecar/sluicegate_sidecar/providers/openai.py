"""The OpenAI adapter (chat completions, completions, embeddings): replies, streams, and the
OpenAI-shaped output translating adapters reuse (requests are built in ``openai_request``).

Pure and on the hot path: bytes are forwarded unchanged and only the fields usage needs are decoded.
Upstream errors are made safe for the client in ``errorinfo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

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
from .errorinfo import openai_error_info
from .keyscrub import NO_KEY, KeyScrubber
from .openai_request import (
    JSON_HEADERS,
    build_openai_request,
    build_responses_request,
    client_wants_usage,
    openai_path,
)
from .openai_responses import ResponsesPassthroughRelay, parse_responses_reply
from .sse import DONE_EVENT, RelayState, data_event, event_fields
from .usagefields import UsageReader, sticky

OPENAI_BASE_URL = "https://api.openai.com/v1"


# --- reading replies ---------------------------------------------------------------------------


def decode_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


class _ReplyChoice(msgspec.Struct):
    finish_reason: str | None = None


# Usage objects are decoded as plain JSON and read by ``usagefields``: a bad count is an anomaly
# to charge a bounded figure for, never a reason to refuse a reply the client is waiting for.
class _Completion(msgspec.Struct):
    choices: list[_ReplyChoice]
    usage: Any = None


class _Embeddings(msgspec.Struct):
    data: msgspec.Raw
    usage: Any = None


class _FunctionDelta(msgspec.Struct):
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None  # DeepSeek, some vLLM servers
    tool_calls: list[_ToolCallDelta] | None = None


class _ChunkChoice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None
    finish_reason: str | None = None


class _Groq(msgspec.Struct):
    usage: Any = None


class _Chunk(msgspec.Struct):
    choices: list[_ChunkChoice] | None = None
    usage: Any = None
    x_groq: _Groq | None = None
    error: Any = None


def _usage(raw: object, embeddings: bool = False) -> Usage | None:
    """Usage from an OpenAI ``usage`` object (None or absent: none reported). ``prompt_tokens`` and
    ``completion_tokens`` are always sent (embeddings have no completion); bad counts are flagged."""
    if raw is None:
        return None
    reader = UsageReader(raw)
    prompt = reader.count("prompt_tokens")
    completion = reader.count("completion_tokens", 0 if embeddings else None)
    details = raw.get("prompt_tokens_details") if isinstance(raw, dict) else None
    cached = 0
    if isinstance(details, dict):
        inner = UsageReader(details)
        cached = inner.count("cached_tokens", 0)
        reader.anomaly = reader.anomaly or inner.anomaly
    usage = Usage(prompt, completion, min(cached, prompt))
    return reader.build(usage, ("prompt_tokens",), ("completion_tokens",))


def parse_openai_reply(op: Operation, body: bytes) -> Reply:
    """Validates a 2xx body minimally and returns it unchanged with its usage."""
    try:
        if op == "embeddings":
            embeddings = msgspec.json.decode(body, type=_Embeddings)
            return Reply(body, _usage(embeddings.usage, embeddings=True))
        completion = msgspec.json.decode(body, type=_Completion)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise BadUpstreamResponse(f"upstream reply is not a valid {op} response") from exc
    finish = completion.choices[0].finish_reason if completion.choices else None
    return Reply(body, _usage(completion.usage), finish)


def error_event(info: UpstreamErrorInfo) -> bytes:
    """An upstream's in-stream error event as the client gets it: rebuilt from the safe fields."""
    error = {"message": info.message, "type": info.type, "param": None, "code": info.code}
    return data_event(msgspec.json.encode({"error": error}))


class OpenAIStreamRelay(RelayState):
    """Passes OpenAI SSE through event by event; drops the usage-only chunk the client did not ask for.

    ``completed`` waits for ``data: [DONE]``: a finish_reason alone is not the end, usage follows it.
    An error event is not passed through: the client gets it rebuilt from fields ``scrubber`` cleaned.
    """

    def __init__(self, keep_usage_chunk: bool, scrubber: KeyScrubber = NO_KEY) -> None:
        super().__init__()
        self._keep_usage_chunk = keep_usage_chunk
        self._scrubber = scrubber

    def feed(self, data: bytes) -> bytes:
        events = self._splitter.feed(data)
        if not events:
            return b""
        if len(events) == 1:
            return self._pass(events[0])
        return b"".join([self._pass(raw) for raw in events])

    def _pass(self, raw: bytes) -> bytes:
        error = self._error
        if not self._keep(raw):
            return b""
        if self._error is not error and self._error is not None:  # this event was the error
            return error_event(self._error)
        return raw

    def finish(self) -> bytes:
        rest = self._splitter.rest()
        if not rest.strip() or self._ended:
            return b""
        # An upstream that closed without the final blank line: accept its last event if it is whole.
        raw = rest.rstrip(b"\r\n") + b"\n\n"
        try:
            return self._pass(raw)
        except BadUpstreamResponse:
            return b""

    def _keep(self, raw: bytes) -> bool:
        _, payload = event_fields(raw)
        if payload is None or self._ended:
            return True
        if payload == b"[DONE]":
            self._ended = True
            return True
        try:
            chunk = msgspec.json.decode(payload, type=_Chunk)
        except msgspec.ValidationError:  # an unusual but well-formed chunk: not ours to judge
            loose = decode_json(payload)
            if isinstance(loose, dict) and loose.get("error") is not None:  # unless it is an error
                self._error = openai_error_info(500, loose, self._scrubber)
            return True
        except msgspec.DecodeError as exc:
            raise BadUpstreamResponse("upstream sent a stream event that is not JSON") from exc
        if chunk.error is not None:
            self._error = openai_error_info(500, {"error": chunk.error}, self._scrubber)
            return True
        usage = chunk.usage if chunk.usage is not None else (chunk.x_groq.usage if chunk.x_groq else None)
        if usage is not None:
            self._usage = sticky(_usage(usage), self._usage)
        if chunk.choices:
            for choice in chunk.choices:
                delta = choice.delta
                if delta is not None:
                    if delta.content:
                        self._output_chars += len(delta.content)
                    if delta.reasoning_content:
                        self._output_chars += len(delta.reasoning_content)
                    if delta.tool_calls:
                        for call in delta.tool_calls:
                            if call.function is not None and call.function.arguments:
                                self._output_chars += len(call.function.arguments)
                elif choice.text:
                    self._output_chars += len(choice.text)
            return True
        return chunk.usage is None or self._keep_usage_chunk


# --- OpenAI-shaped output for translating adapters ---------------------------------------------


def usage_object(usage: Usage) -> dict[str, Any]:
    """``usage`` in the chat.completion shape (prompt tokens include cached reads and cache writes;
    completion tokens include the reasoning tokens, counted apart when there are any)."""
    shaped: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }
    if usage.reasoning_tokens:
        shaped["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return shaped


def chunk_event(
    chunk_id: str, model: str, choices: list[dict[str, Any]], usage: Usage | None = None
) -> bytes:
    """One ``chat.completion.chunk`` SSE event. ``created`` is 0: pure code has no clock."""
    chunk: dict[str, Any] = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage_object(usage)
    return data_event(msgspec.json.encode(chunk))


def stream_end(usage: Usage | None, chunk_id: str, model: str, client_wants_usage: bool) -> bytes:
    """The usage-only chunk (when the client asked and usage is known) and ``data: [DONE]``."""
    if client_wants_usage and usage is not None:
        return chunk_event(chunk_id, model, [], usage) + DONE_EVENT
    return DONE_EVENT


# --- the adapter -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenAIAdapter:
    """OpenAI and every OpenAI-compatible API (they differ only in the defaults and two quirks below).

    ``stream_usage_option`` False: the upstream rejects ``stream_options`` and reports usage anyway
    (Mistral). ``max_tokens_only``: the upstream rejects ``max_completion_tokens`` (Mistral).
    ``completion_tokens_field``: chat output caps go in ``max_completion_tokens``, which every OpenAI
    chat model accepts and its reasoning models require (``/v1/completions`` keeps ``max_tokens``).
    """

    provider: str = "openai"
    default_base_url: str | None = OPENAI_BASE_URL
    stream_usage_option: bool = True
    max_tokens_only: bool = False
    completion_tokens_field: bool = True

    def base_url(self, conn: Connection) -> str:
        base = conn.base_url or self.default_base_url
        if not base:
            raise ValueError(f"connection {conn.name!r} ({conn.provider}) has no base URL")
        return base.rstrip("/")

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
        url = self.base_url(conn) + openai_path(op, self.provider)
        headers = dict(JSON_HEADERS)
        if conn.api_key:
            headers["Authorization"] = f"Bearer {conn.api_key}"
        if op == "responses":
            return build_responses_request(url, headers, request, model, stream)
        return build_openai_request(
            url,
            headers,
            request,
            model,
            stream and op != "embeddings",
            stream_usage_option=self.stream_usage_option,
            max_tokens_only=self.max_tokens_only,
            completion_tokens_field=self.completion_tokens_field and op == "chat",
        )

    def parse(self, op: Operation, model: str, body: bytes) -> Reply:
        if op == "responses":
            return parse_responses_reply(body)
        return parse_openai_reply(op, body)

    def relay(
        self, op: Operation, model: str, request: Mapping[str, Any], *, scrubber: KeyScrubber = NO_KEY
    ) -> OpenAIStreamRelay | ResponsesPassthroughRelay:
        if op == "responses":
            return ResponsesPassthroughRelay(scrubber)
        if op not in ("chat", "completions"):
            raise UnsupportedOperation(f"/v1/{op} cannot be streamed")
        return OpenAIStreamRelay(keep_usage_chunk=client_wants_usage(request), scrubber=scrubber)

    def parse_error(self, status: int, body: bytes, *, scrubber: KeyScrubber = NO_KEY) -> UpstreamErrorInfo:
        return openai_error_info(status, decode_json(body), scrubber)
