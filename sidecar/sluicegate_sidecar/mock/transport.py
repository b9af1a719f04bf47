"""The built-in offline provider: an httpx transport that answers in-process, in OpenAI's format
(chat, completions, embeddings, models) and Anthropic's (Messages and count_tokens, in ``messages``).

Used by `make run` and by connections whose provider is ``mock``. Output is a pure function of the
request body and the seeds (generated in ``content``); the only state is one instance's failure
sequence. It never opens a socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from sluicegate_contract.schema import MockSettings

from .content import Choice, estimate_tokens, generate_choice, token_logprobs, unit_vector, usage_object
from .messages import MessagesError, count_reply, messages_reply, messages_sse
from .openai import (
    BadRequest,
    chat_logprobs,
    chat_tool,
    choice_count,
    delta_logprobs,
    max_tokens,
    model_name,
    response_schema,
    stream_options,
)
from .responses import mock_chat_request, responses_chunks

DEFAULT_MODELS = ("mock-small", "mock-large", "mock-embedding")
DEFAULT_EMBEDDING_DIMENSIONS = 8
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_OVERLOADED = "The engine is currently overloaded, please try again later."


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    content_type: str
    chunks: tuple[bytes, ...]
    streamed: bool = False


class _Body(httpx.AsyncByteStream):
    """A response body delivered chunk by chunk, as from a network, with a delay between chunks."""

    def __init__(self, chunks: Sequence[bytes], delay: float) -> None:
        self._chunks = chunks
        self._delay = delay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._chunks):
            if i and self._delay > 0:
                await asyncio.sleep(self._delay)
            yield chunk


class MockUpstreamTransport(httpx.AsyncBaseTransport):
    """Answers POST .../chat/completions, .../completions, .../embeddings, .../responses and GET .../models.

    Text derives from a hash of the request, ``settings.seed`` and ``rng_seed``; the 500/503 failure
    sequence comes from a generator seeded with ``settings.seed``, one per instance, drawn once per
    valid request (a bad request always gets its 400).
    """

    def __init__(
        self,
        settings: MockSettings,
        rng_seed: int,
        *,
        clock: Callable[[], float] = time.time,
        models: Sequence[str] = DEFAULT_MODELS,
    ) -> None:
        self._settings = settings
        self._seed = rng_seed
        self._clock = clock
        self._models = tuple(models)
        self._failures = random.Random(settings.seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        reply = self._answer(request.method, request.url.path, body)
        if self._settings.latency_ms > 0:
            await asyncio.sleep(self._settings.latency_ms / 1000)
        headers = {"content-type": reply.content_type, "x-request-id": "req_" + _digest(body).hex()[:24]}
        if not reply.streamed:
            headers["content-length"] = str(sum(len(c) for c in reply.chunks))
        delay = self._settings.stream_chunk_delay_ms / 1000 if reply.streamed else 0.0
        return httpx.Response(
            reply.status, headers=headers, stream=_Body(reply.chunks, delay), request=request
        )

    def _answer(self, method: str, path: str, body: bytes) -> _Reply:
        """The reply to one request (without latency). A valid request draws from the failure sequence."""
        route = path.rstrip("/").rsplit("/", 2)
        op = "chat" if route[-2:] == ["chat", "completions"] else route[-1]
        if route[-2:] == ["messages", "count_tokens"]:
            op = "count_tokens"
        if method == "POST" and op in ("messages", "count_tokens"):
            return self._anthropic(op, body)
        if method == "GET" and op == "models":
            listing = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "sluicegate-mock"}
                       for m in self._models]  # fmt: skip
            return _json(200, {"object": "list", "data": listing})
        if method != "POST" or op not in ("chat", "completions", "embeddings", "responses"):
            return _error(404, f"Invalid URL ({method} {path})", "invalid_request_error")
        try:
            request = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if not isinstance(request, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")
        # The same request streamed or not gets the same text: hash it without the stream fields.
        salt = f"{self._settings.seed}:{self._seed}:".encode()
        content = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
        digest = _digest(salt + msgspec.json.encode(content, order="sorted"))
        try:
            if op == "responses":
                reply = self._responses(request, digest)
            elif op == "chat":
                reply = self._chat(request, digest)
            else:
                reply = (
                    self._completions(request, digest) if op == "completions" else _embeddings(request, salt)
                )
        except BadRequest as exc:
            return _error(400, exc.args[0], "invalid_request_error", exc.args[1])
        if self._failures.random() < self._settings.failure_rate:
            status = self._failures.choice((500, 503))
            return _error(status, _SERVER_ERROR if status == 500 else _OVERLOADED, "server_error")
        return reply

    def _chat(self, request: dict[str, Any], digest: bytes) -> _Reply:
        model = model_name(request)
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array.", "messages")
        stream, include_usage = stream_options(request)
        limit = max_tokens(request)
        tool = chat_tool(request, messages)
        schema = response_schema(request)
        choices = [generate_choice(digest, i, limit, tool, schema) for i in range(choice_count(request))]
        top = chat_logprobs(request)
        logprobs = [
            token_logprobs(digest, i, c.pieces, top) if top is not None and c.tool_name is None else None
            for i, c in enumerate(choices)
        ]
        prompt_tokens = _chat_prompt_tokens(messages, request.get("tools"))
        usage = usage_object(prompt_tokens, sum(c.completion_tokens for c in choices))
        head = {"id": "chatcmpl-" + digest.hex()[:29], "created": int(self._clock()), "model": model}
        tail = {"service_tier": "default", "system_fingerprint": "fp_sluicegate_mock"}
        if not stream:
            body = head | {
                "object": "chat.completion",
                "choices": [_message(i, c, logprobs[i]) for i, c in enumerate(choices)],
            }
            return _json(200, body | {"usage": usage} | tail)
        base = head | {"object": "chat.completion.chunk"} | tail
        steps = [
            [
                _step(i, "delta", d, logprobs=delta_logprobs(logprobs[i], k))
                for k, d in enumerate(_deltas(i, c))
            ]
            + [_step(i, "delta", {}, c)]
            for i, c in enumerate(choices)
        ]
        events = [base | {"choices": [step]} for step in _interleave(steps)]
        return _sse(events, base, usage if include_usage else None)

    def _responses(self, request: dict[str, Any], digest: bytes) -> _Reply:
        """The Responses API: the same conversation answered in chat, rewritten (``mock_responses``)."""
        try:
            chat = self._chat(mock_chat_request(request), digest)
        except ValueError as exc:
            raise BadRequest(*exc.args) from None
        chunks = responses_chunks(request, chat.status, chat.chunks, chat.streamed)
        return _Reply(chat.status, chat.content_type, chunks, chat.streamed)

    def _anthropic(self, op: str, body: bytes) -> _Reply:
        """Messages and count_tokens in Anthropic's wire format, errors in its envelope."""
        salt = f"{self._settings.seed}:{self._seed}:".encode()
        try:
            request = msgspec.json.decode(body)
            if not isinstance(request, dict):
                raise MessagesError("The request body must be a JSON object.")
            if op == "count_tokens":
                return _json(200, count_reply(request))
            content = {k: v for k, v in request.items() if k != "stream"}
            digest = _digest(salt + msgspec.json.encode(content, order="sorted"))
            message, pieces = messages_reply(request, digest)
        except msgspec.DecodeError:
            return _anthropic_error(400, "There was an issue with the JSON body of your request.")
        except MessagesError as exc:
            return _anthropic_error(400, exc.args[0])
        if self._failures.random() < self._settings.failure_rate:
            status = self._failures.choice((500, 529))
            return _anthropic_error(status, "Overloaded" if status == 529 else "Internal server error")
        if request.get("stream") is not True:
            return _json(200, message)
        return _Reply(200, "text/event-stream; charset=utf-8", messages_sse(message, pieces), streamed=True)

    def _completions(self, request: dict[str, Any], digest: bytes) -> _Reply:
        model = model_name(request)
        prompt = request.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("'prompt' must be a string or a non-empty array of strings.", "prompt")
        stream, include_usage = stream_options(request)
        limit = max_tokens(request)
        n = choice_count(request)
        choices = [generate_choice(digest, i, limit, None) for i in range(n * len(prompts))]
        usage = usage_object(
            sum(estimate_tokens(p) for p in prompts), sum(c.completion_tokens for c in choices)
        )
        head = {"id": "cmpl-" + digest.hex()[:29], "object": "text_completion", "created": int(self._clock())}
        head |= {"model": model, "system_fingerprint": "fp_sluicegate_mock"}
        if not stream:
            items = [_step(i, "text", c.text, c) for i, c in enumerate(choices)]
            return _json(200, head | {"choices": items, "usage": usage})
        steps = [
            [_step(i, "text", p) for p in c.pieces] + [_step(i, "text", "", c)] for i, c in enumerate(choices)
        ]
        events = [head | {"choices": [step]} for step in _interleave(steps)]
        return _sse(events, head, usage if include_usage else None)


def _embeddings(request: dict[str, Any], salt: bytes) -> _Reply:
    """One vector per input, a function of the input's text (or tokens) and the model only."""
    model = model_name(request)
    raw = request.get("input")
    items = [raw] if isinstance(raw, str) or _is_token_list(raw) else raw
    valid = isinstance(items, list) and all(isinstance(i, str) or _is_token_list(i) for i in items)
    if not valid or not items:
        raise BadRequest("'input' must be a string, an array of strings or of token arrays.", "input")
    dimensions = request.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 4096:
        raise BadRequest("'dimensions' must be an integer between 1 and 4096.", "dimensions")
    encoding = request.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    data = []
    tokens = 0
    for index, item in enumerate(items):
        tokens += estimate_tokens(item) if isinstance(item, str) else len(item)
        vector = unit_vector(_digest(salt + msgspec.json.encode([model, item])), dimensions)
        packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        embedding = packed if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _json(200, {"object": "list", "data": data, "model": model, "usage": usage})


def _is_token_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) for t in value)


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _chat_prompt_tokens(messages: list[Any], tools: object) -> int:
    """About what tiktoken counts: 3 per message plus its text, 3 to prime the reply, plus the tools."""
    total = 3
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("Each message must be an object.", "messages")
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        texts = [p if isinstance(p, str) else p.get("text", "") if isinstance(p, dict) else "" for p in parts]
        total += 3 + sum(estimate_tokens(t) for t in texts if isinstance(t, str))
        total += 85 * sum(1 for p in parts if isinstance(p, dict) and p.get("type") == "image_url")
    if tools:
        total += estimate_tokens(msgspec.json.encode(tools).decode())
    return total


def _tool_call(index: int, choice: Choice) -> dict[str, Any]:
    call_id = "call_" + hashlib.sha256(f"{index}:{choice.text}".encode()).hexdigest()[:24]
    function = {"name": choice.tool_name, "arguments": choice.text}
    return {"id": call_id, "type": "function", "function": function}


def _message(index: int, choice: Choice, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text,
        "refusal": None,
        "annotations": [],
    }
    if choice.tool_name is not None:
        message |= {"content": None, "tool_calls": [_tool_call(index, choice)]}
    content = None if logprobs is None else {"content": logprobs, "refusal": None}
    return _step(index, "message", message, choice, logprobs=content)


def _deltas(index: int, choice: Choice) -> list[dict[str, Any]]:
    """A choice's stream deltas: the role first, then one per token (or per piece of tool arguments)."""
    if choice.tool_name is None:
        return [{"role": "assistant", "content": "", "refusal": None}] + [
            {"content": p} for p in choice.pieces
        ]
    call = _tool_call(index, choice)
    call["function"]["arguments"] = ""
    first = {"role": "assistant", "content": None, "tool_calls": [{"index": 0} | call]}
    return [first] + [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in choice.pieces]


def _step(
    index: int, field: str, value: object, end: Choice | None = None, *, logprobs: object = None
) -> dict[str, Any]:
    """One choice in a reply or chunk: ``delta`` (chat) or ``text`` (completions), with its finish reason."""
    finish = None if end is None else end.finish_reason
    return {"index": index, field: value, "logprobs": logprobs, "finish_reason": finish}


def _interleave(per_choice: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Round-robin over the choices, as OpenAI streams ``n`` > 1."""
    longest = max(len(steps) for steps in per_choice)
    return [steps[k] for k in range(longest) for steps in per_choice if k < len(steps)]


def _sse(events: list[dict[str, Any]], base: dict[str, Any], usage: dict[str, Any] | None) -> _Reply:
    """SSE frames ending in ``[DONE]``; with usage, every chunk has ``usage: null`` and a last usage chunk."""
    if usage is not None:
        events = [e | {"usage": None} for e in events] + [base | {"choices": [], "usage": usage}]
    frames = [b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events]
    return _Reply(200, "text/event-stream; charset=utf-8", (*frames, b"data: [DONE]\n\n"), streamed=True)


def _json(status: int, payload: object) -> _Reply:
    return _Reply(status, "application/json", (msgspec.json.encode(payload),))


def _anthropic_error(status: int, message: str) -> _Reply:
    kind = {400: "invalid_request_error", 529: "overloaded_error"}.get(status, "api_error")
    return _json(status, {"type": "error", "error": {"type": kind, "message": message}})


def _error(status: int, message: str, kind: str, param: str | None = None) -> _Reply:
    return _json(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})
