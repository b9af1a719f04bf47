"""The Gemini adapter: OpenAI chat completions and embeddings ⇄ generateContent and batchEmbedContents.

Pure. The key travels only in the ``x-goog-api-key`` header, never in the URL; requests are
translated by ``gemini_request``, replies and streams here.
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
from .errorinfo import error_info
from .gemini_request import embed_body, generate_content_body, model_path
from .keyscrub import NO_KEY, KeyScrubber
from .openai import chunk_event, decode_json, stream_end, usage_object
from .openai_request import client_wants_usage
from .responses_bridge import BridgedResponsesRelay, responses_reply
from .responses_chat import chat_request
from .sse import RelayState, event_fields
from .usagefields import UsageReader, sticky

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"})


# --- replies -----------------------------------------------------------------------------------


def _usage(meta: object) -> Usage | None:
    """Usage from ``usageMetadata`` (absent: none reported). Proto3 JSON leaves out zero counts, so
    an absent count is 0; a count that is not a non-negative integer is flagged, never raised."""
    if meta is None:
        return None
    reader = UsageReader(meta)
    prompt = reader.count("promptTokenCount", 0) + reader.count("toolUsePromptTokenCount", 0)
    output = reader.count("candidatesTokenCount", 0) + reader.count("thoughtsTokenCount", 0)
    cached = reader.count("cachedContentTokenCount", 0)
    thoughts = reader.count("thoughtsTokenCount", 0)
    usage = Usage(prompt, output, min(cached, prompt), reasoning_tokens=thoughts)
    inputs = ("promptTokenCount", "toolUsePromptTokenCount")
    return reader.build(
        usage, inputs, ("candidatesTokenCount", "thoughtsTokenCount"), ("cachedContentTokenCount",)
    )


def _finish(reason: object, had_calls: bool) -> str:
    if reason in _FILTERED:
        return "content_filter"
    finish = _FINISH.get(str(reason), "stop")
    return "tool_calls" if had_calls and finish == "stop" else finish


@dataclass(slots=True)
class _Delta:
    """One candidate's parts as chat: text, tool calls, thought summary text, the first call's
    thought signature."""

    text: str
    calls: list[dict[str, Any]]
    thought: str
    signature: str | None


def _candidate_delta(candidate: Mapping[str, Any], first_call: int) -> _Delta:
    """The text, the OpenAI tool calls (numbered from ``first_call``), the thoughts (``thought``
    parts: summaries, sent only when ``includeThoughts`` asked) and the first call's signature."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    signature: str | None = None
    for part in (candidate.get("content") or {}).get("parts") or []:
        if part.get("thought") is True:
            if isinstance(part.get("text"), str):
                thoughts.append(part["text"])
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            if not calls and isinstance(part.get("thoughtSignature"), str):
                signature = part["thoughtSignature"]
            index = first_call + len(calls)
            arguments = msgspec.json.encode(call.get("args") or {}).decode()
            calls.append(
                {
                    "index": index,
                    "id": call.get("id") or f"call_{index}",
                    "type": "function",
                    "function": {"name": call.get("name"), "arguments": arguments},
                }
            )
    return _Delta("".join(texts), calls, "".join(thoughts), signature)


def _thinking(thought: str, signature: str | None) -> dict[str, Any]:
    """Thoughts as a chat ``thinking_blocks`` entry (``responses_reasoning``)."""
    block = {"type": "thinking", "thinking": thought, "origin": "gemini"}
    return block | ({"signature": signature} if signature else {})


def chat_completion(
    response: Mapping[str, Any], model: str
) -> tuple[dict[str, Any], Usage | None, str | None]:
    candidates = response.get("candidates")
    if not isinstance(candidates, list):
        if not isinstance(response.get("promptFeedback"), dict):
            raise BadUpstreamResponse("upstream reply is not a generateContent response")
        candidates = [{"finishReason": "SAFETY"}]  # the prompt itself was blocked
    choices = []
    for position, candidate in enumerate(candidates):
        parts = _candidate_delta(candidate, 0)
        text, calls = parts.text, parts.calls
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if parts.thought:
            message["thinking_blocks"] = [_thinking(parts.thought, parts.signature)]
        if calls:
            message["tool_calls"] = [{k: v for k, v in call.items() if k != "index"} for call in calls]
        finish = _finish(candidate.get("finishReason"), bool(calls))
        index = candidate.get("index", position)
        choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
    usage = _usage(response.get("usageMetadata"))
    completion: dict[str, Any] = {
        "id": response.get("responseId") or "gemini",
        "object": "chat.completion",
        "created": 0,
        "model": response.get("modelVersion") or model,
        "choices": choices,
        "usage": usage_object(usage or Usage(0, 0)),
    }
    return completion, usage, choices[0]["finish_reason"] if choices else None


def embeddings_list(response: Mapping[str, Any], model: str) -> dict[str, Any]:
    embeddings = response.get("embeddings")
    if not isinstance(embeddings, list):
        raise BadUpstreamResponse("upstream reply is not a batchEmbedContents response")
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": item.get("values") if isinstance(item, dict) else None,
        }
        for i, item in enumerate(embeddings)
    ]
    if any(not isinstance(item["embedding"], list) for item in data):
        raise BadUpstreamResponse("upstream embedding without values")
    # Gemini reports no usage for embeddings; the body still carries the field SDKs expect.
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}


class ChatRelay(RelayState):
    """Gemini SSE (one GenerateContentResponse per event, no end marker) → OpenAI chunk SSE.

    A finish reason followed by the upstream's close is a proper end.
    """

    def __init__(self, model: str, client_wants_usage: bool, scrubber: KeyScrubber = NO_KEY) -> None:
        super().__init__()
        self._model = model
        self._scrubber = scrubber
        self._id = "gemini"
        self._wants_usage = client_wants_usage
        self._finished = False
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index → tool calls sent so far
        self._thought: set[int] = set()  # candidates that streamed thoughts

    def feed(self, data: bytes) -> bytes:
        try:
            return b"".join([self._event(raw) for raw in self._splitter.feed(data)])
        except (AttributeError, TypeError) as exc:
            raise BadUpstreamResponse("upstream sent a malformed generateContent event") from exc

    def finish(self) -> bytes:
        rest = self._splitter.rest()
        tail = b""
        if rest.strip():
            try:
                tail = self._event(rest)
            except (BadUpstreamResponse, AttributeError, TypeError):
                return b""  # a truncated last event: the stream did not end properly
        if not self._finished or self._error is not None:
            return tail
        self._ended = True
        return tail + stream_end(self._usage, self._id, self._model, self._wants_usage)

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return chunk_event(self._id, self._model, [choice])

    def _event(self, raw: bytes) -> bytes:
        _, payload = event_fields(raw)
        if payload is None or self._error is not None:
            return b""
        response = decode_json(payload)
        if isinstance(response, list) and len(response) == 1:
            response = response[0]
        if not isinstance(response, dict):
            raise BadUpstreamResponse("upstream sent a stream event that is not a JSON object")
        if isinstance(response.get("error"), dict):
            error = response["error"]
            self._error = error_info(500, error.get("message"), error.get("status"), scrubber=self._scrubber)
            return b""
        self._id = response.get("responseId") or self._id
        self._model = response.get("modelVersion") or self._model
        self._usage = sticky(_usage(response.get("usageMetadata")), self._usage)
        candidates = response.get("candidates")
        if not isinstance(candidates, list):
            if isinstance(response.get("promptFeedback"), dict) and response["promptFeedback"].get(
                "blockReason"
            ):
                self._finished = True
                return self._chunk(0, {"role": "assistant", "content": ""}, "content_filter")
            return b""
        out: list[bytes] = []
        for position, candidate in enumerate(candidates):
            index = candidate.get("index", position)
            parts = _candidate_delta(candidate, self._calls.get(index, 0))
            text, calls = parts.text, parts.calls
            delta: dict[str, Any] = {}
            if index not in self._started:
                self._started.add(index)
                delta = {"role": "assistant", "content": ""}
            if parts.thought or (parts.signature and index in self._thought):
                self._thought.add(index)  # thoughts stream first; the signature comes with the call
                thinking = {"index": 0, **_thinking(parts.thought, parts.signature)}
                delta["thinking_blocks"] = [thinking]
                self._output_chars += len(parts.thought)
            if text:
                delta["content"] = text
                self._output_chars += len(text)
            if calls:
                delta["tool_calls"] = calls
                self._calls[index] = self._calls.get(index, 0) + len(calls)
                self._output_chars += sum(len(call["function"]["arguments"]) for call in calls)
            if delta:
                out.append(self._chunk(index, delta))
            if candidate.get("finishReason"):
                self._finished = True
                finish = _finish(candidate["finishReason"], self._calls.get(index, 0) > 0)
                out.append(self._chunk(index, {}, finish))
        return b"".join(out)


# --- the adapter -------------------------------------------------------------------------------


def _decode_object(body: bytes, what: str) -> dict[str, Any]:
    decoded = decode_json(body)
    if not isinstance(decoded, dict):
        raise BadUpstreamResponse(f"upstream reply is not a {what} response")
    return decoded


@dataclass(frozen=True, slots=True)
class GeminiAdapter:
    provider: str = "gemini"

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
        base = f"{(conn.base_url or GEMINI_BASE_URL).rstrip('/')}/v1beta/{model_path(model)}"
        if op == "responses":  # translated through chat (responses_chat), reasoning as thinking
            chat = chat_request(request, self.provider, stream=stream, thinking="gemini")
            url = base + (":streamGenerateContent?alt=sse" if stream else ":generateContent")
            body = generate_content_body(chat, model, thinking=True)
        elif op == "chat":
            url = base + (":streamGenerateContent?alt=sse" if stream else ":generateContent")
            body = generate_content_body(request)
        elif op == "embeddings":
            url, body = base + ":batchEmbedContents", embed_body(model, request)
        else:
            raise UnsupportedOperation(f"gemini connections do not serve /v1/{op}")
        headers = {"Content-Type": "application/json"}
        if conn.api_key:
            headers["x-goog-api-key"] = conn.api_key
        return UpstreamRequest("POST", url, headers, msgspec.json.encode(body))

    def parse(self, op: Operation, model: str, body: bytes) -> Reply:
        if op == "responses":
            return responses_reply(self.parse("chat", model, body), model)
        try:
            if op == "embeddings":
                listing = embeddings_list(_decode_object(body, "batchEmbedContents"), model)
                return Reply(msgspec.json.encode(listing), None)
            completion, usage, finish = chat_completion(_decode_object(body, "generateContent"), model)
        except (AttributeError, TypeError) as exc:
            raise BadUpstreamResponse("upstream reply is not a generateContent response") from exc
        return Reply(msgspec.json.encode(completion), usage, finish)

    def relay(
        self, op: Operation, model: str, request: Mapping[str, Any], *, scrubber: KeyScrubber = NO_KEY
    ) -> ChatRelay | BridgedResponsesRelay:
        if op == "responses":
            chat = chat_request(request, self.provider, stream=True, thinking="gemini")
            return BridgedResponsesRelay(self.relay("chat", model, chat, scrubber=scrubber), model, request)
        if op != "chat":
            raise UnsupportedOperation(f"/v1/{op} cannot be streamed from gemini connections")
        return ChatRelay(model, client_wants_usage(request), scrubber)

    def parse_error(self, status: int, body: bytes, *, scrubber: KeyScrubber = NO_KEY) -> UpstreamErrorInfo:
        payload = decode_json(body)
        if isinstance(payload, list) and payload:
            payload = payload[0]
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return error_info(status, None)
        details = error.get("details")
        reasons = (
            {d.get("reason") for d in details if isinstance(d, dict)} if isinstance(details, list) else set()
        )
        message = error.get("message")
        credentials = bool(reasons & _AUTH_REASONS) or (isinstance(message, str) and "API key" in message)
        return error_info(status, message, error.get("status"), credentials=credentials, scrubber=scrubber)
