"""Fake OpenAI and Azure OpenAI servers: chat completions, completions, embeddings, models (test support).

Wire format as the real APIs send it, including stream chunks with ``stream_options.include_usage`` and
``prompt_tokens_details.cached_tokens``; Azure adds deployment URLs, ``api-version``, ``api-key`` and
content-filter results (its first stream chunk has empty ``choices`` and no usage). A request
offering tools gets a call of one (``tool_input`` as arguments) unless it ends with a tool's result.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from typing import Any, ClassVar

from tests.support.fakes_responses import MIN_OUTPUT_TOKENS, below_minimum, responses_answer
from tests.support.fakes_responses import error_frame as responses_error_frame
from tests.support.fakes_server import (
    UNSET,
    FakeServer,
    FakeUsage,
    Fault,
    Plan,
    RecordedRequest,
    json_plan,
    split_words,
)

_ERRORS = {  # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you have no access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_OPERATIONS = ("chat/completions", "completions", "embeddings", "models", "responses")
_FILTERS = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}
_PROMPT_FILTERS = [{"prompt_index": 0, "content_filter_results": _FILTERS}]


def _frame(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def usage_json(usage: FakeUsage) -> dict[str, Any]:
    """OpenAI's usage object (it has no cache-write count: ``cache_write_tokens`` is not reported)."""
    details = ("reasoning_tokens", "audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens")
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": dict.fromkeys(details, 0),
    }


class FakeOpenAI(FakeServer):
    """``base_url`` ends in ``/v1``; when ``api_key`` is set it is checked as ``Authorization: Bearer``."""

    prefix = "/v1"
    azure: ClassVar[bool] = False
    models = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")

    def route(self, request: RecordedRequest) -> str | Plan:
        """The operation the path names, or an error reply."""
        rest = request.path.removeprefix(self.prefix + "/")
        if rest not in _OPERATIONS or rest == request.path:
            return self.error(404, f"Invalid URL ({request.method} {request.path})")
        return rest

    def authorized(self, request: RecordedRequest) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    def error(self, status: int, message: str | None) -> Plan:
        fallback = ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
        kind, code, default = _ERRORS.get(status, fallback)
        return json_plan(
            status, {"error": {"message": message or default, "type": kind, "param": None, "code": code}}
        )

    def stream_error_frame(self, message: str) -> bytes:
        if self.requests and self.requests[-1].path.endswith("/responses"):
            return responses_error_frame(message, sequence_number=99)
        return _frame({"error": {"message": message, "type": "server_error", "param": None, "code": None}})

    def answer(
        self, request: RecordedRequest, text: str, usage: FakeUsage | None, fault: Fault | None = None
    ) -> tuple[Plan, FakeUsage | None]:
        op = self.route(request)
        if isinstance(op, Plan):
            return op, None
        if not self.authorized(request):
            return self.error(401, None), None
        if op == "models":
            data = [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}
                for m in self.models
            ]
            return json_plan(200, {"object": "list", "data": data}), None
        try:
            body = json.loads(request.body)
        except ValueError:
            return self.error(400, "We could not parse the JSON body of your request."), None
        if op == "responses":
            limit = body.get("max_output_tokens")
            if isinstance(limit, int) and limit < MIN_OUTPUT_TOKENS:
                return below_minimum(limit), None
            pieces = split_words(text)
            return responses_answer(
                body,
                len(self.requests),
                pieces,
                self.tool_input,
                lambda p: self.reply_usage(request, p, usage),
            )
        raw = UNSET if fault is None else fault.raw_usage
        if op == "embeddings":
            reported = usage or self.usage or FakeUsage(max(1, len(request.body) // 4), 0)
            return _embeddings(body, reported, raw), reported
        chat = op == "chat/completions"
        tool = _tool(body) if chat else None
        pieces, finish = split_words(text), "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if tool is not None:
            arguments = json.dumps(self.tool_input)
            pieces, finish = [arguments[i : i + 10] for i in range(0, len(arguments), 10)], "tool_calls"
        elif isinstance(limit, int) and len(pieces) > limit and not (fault and fault.ignore_cap):
            pieces, finish = pieces[:limit], "length"
        reported = self.reply_usage(request, pieces, usage)
        usage_body = usage_json(reported) if raw is UNSET else raw
        number = len(self.requests)
        head = {
            "id": f"chatcmpl-fake{number:06d}" if chat else f"cmpl-fake{number:06d}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "system_fingerprint": "fp_fake",
        }
        call = None if tool is None else {"id": f"call_fake{number:06d}", "type": "function", "name": tool}
        if body.get("stream") is not True:
            return self._whole(head, "".join(pieces), call, finish, usage_body), reported
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        streamed = self._streamed(head, pieces, call, finish, usage_body if include_usage else UNSET)
        return streamed, reported

    def content_frame(self, plan: Plan) -> int:
        return 2 if self.azure else 1  # after Azure's prompt-filter chunk and the role chunk

    def _whole(
        self, head: dict[str, Any], content: str, call: dict[str, Any] | None, finish: str, usage: Any
    ) -> Plan:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        if head["object"] == "text_completion":
            choice["text"] = content
        elif call is None:
            choice["message"] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        else:
            calls = [_tool_call(call, content)]
            choice["message"] = {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}
        if self.azure:
            choice["content_filter_results"] = _FILTERS
            head = head | {"prompt_filter_results": _PROMPT_FILTERS}
        return json_plan(200, head | {"choices": [choice], "usage": usage})

    def _streamed(
        self,
        head: dict[str, Any],
        pieces: list[str],
        call: dict[str, Any] | None,
        finish: str,
        usage: Any,
    ) -> Plan:
        """One chunk per piece, a finish chunk, with include_usage a usage chunk, then ``[DONE]``."""
        if head["object"] == "text_completion":
            steps = [{"text": p, "finish_reason": None} for p in pieces] + [
                {"text": "", "finish_reason": finish}
            ]
        else:
            head = head | {"object": "chat.completion.chunk"}
            if call is None:
                deltas = [{"role": "assistant", "content": "", "refusal": None}] + [
                    {"content": p} for p in pieces
                ]
            else:
                first = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"index": 0} | _tool_call(call, "")],
                }
                more = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
                deltas = [first, *more]
            steps = [{"delta": d, "finish_reason": None} for d in deltas] + [
                {"delta": {}, "finish_reason": finish}
            ]
        chunks = [head | {"choices": [{"index": 0, "logprobs": None} | step]} for step in steps]
        if self.azure:
            empty = {"id": "", "object": "", "created": 0, "model": "", "choices": []}
            chunks.insert(0, empty | {"prompt_filter_results": _PROMPT_FILTERS})
        if usage is not UNSET:  # the usage object (any JSON, for bad-usage faults) in its own last chunk
            chunks = [c | {"usage": None} for c in chunks] + [head | {"choices": [], "usage": usage}]
        frames = (*(_frame(c) for c in chunks), b"data: [DONE]\n\n")
        return Plan(200, "text/event-stream; charset=utf-8", frames, streamed=True)


def _tool_call(call: dict[str, Any], arguments: str) -> dict[str, Any]:
    return {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": arguments}}


def _tool(body: dict[str, Any]) -> str | None:
    """The function to call: the named tool_choice, else the first tool, unless tool_choice is "none"
    or (left to the model) the conversation ends with a tool's result: then it answers in text, as a
    model does after a tool result (so an SDK's tool loop ends)."""
    names = [t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    messages = body.get("messages")
    answered = isinstance(messages, list) and messages and messages[-1].get("role") == "tool"
    if not names or choice == "none" or (answered and choice in (None, "auto")):
        return None
    if isinstance(choice, dict):
        return str(choice["function"]["name"])
    return names[0]


def _embeddings(body: dict[str, Any], usage: FakeUsage, raw: Any = UNSET) -> Plan:
    """Vector i is (0.1 * (i + 1), 0, 0, ...) of ``dimensions`` (default 8) floats, base64 if asked."""
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) and not all(isinstance(i, int) for i in inputs) else [inputs]
    dimensions = body.get("dimensions", 8)
    data = []
    for index in range(len(items)):
        vector = [round((index + 1) * 0.1, 3)] + [0.0] * (dimensions - 1)
        encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        embedding = encoded if body.get("encoding_format") == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = (
        {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens} if raw is UNSET else raw
    )
    return json_plan(200, {"object": "list", "data": data, "model": body.get("model"), "usage": tokens})


class FakeAzureOpenAI(FakeOpenAI):
    """Azure OpenAI: ``base_url`` is the resource endpoint (the root). Serves
    ``/openai/deployments/{deployment}/{operation}?api-version=...`` and ``/openai/v1/{operation}``;
    when ``api_key`` is set it is checked as the ``api-key`` header."""

    prefix = ""
    azure = True

    def route(self, request: RecordedRequest) -> str | Plan:
        match = re.fullmatch(r"/openai/(?:deployments/[^/]+|(v1))/(.+)", request.path)
        if match is None or match.group(2) not in _OPERATIONS:
            return json_plan(404, {"error": {"code": "404", "message": "Resource not found"}})
        if match.group(1) is None and "api-version" not in request.query:
            return json_plan(
                404, {"error": {"code": "404", "message": "Missing query parameter: api-version"}}
            )
        return match.group(2)

    def authorized(self, request: RecordedRequest) -> bool:
        return self.api_key is None or request.headers.get("api-key") == self.api_key

    def error(self, status: int, message: str | None) -> Plan:
        if status != 401:
            return super().error(status, message)
        message = message or "Access denied due to invalid subscription key or wrong API endpoint."
        return json_plan(401, {"error": {"code": "401", "message": message}})
