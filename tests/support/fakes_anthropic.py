"""A fake Anthropic Messages API (POST /v1/messages, POST /v1/messages/count_tokens), streaming and
not, with tool use (test support). Every request's headers are recorded (``requests``).

Streams the full event sequence: message_start, content_block_start, ping, content_block_delta
(text_delta or input_json_delta), content_block_stop, message_delta (stop_reason, usage), message_stop.
A request offering tools gets a call of one (``tool_input``) unless its last turn holds only tool results.
As the real API does, a beta-only body field is refused with 400 unless ``anthropic-beta`` names its
beta (``BETA_FIELDS``), and count_tokens refuses the fields it does not take (``max_tokens``, ``stream``).

Extended thinking as documented: with ``thinking: {"type": "enabled", "budget_tokens": N}`` the reply
starts with a ``thinking`` block (``thinking_text``) carrying a ``signature`` over its text, streamed as
thinking_delta events then one signature_delta; its words count as output tokens. Such a request is
refused (400) when N < 1024 or N ≥ max_tokens, with temperature other than 1, top_k or top_p < 0.95,
with a forced tool_choice, when the last assistant turn holds tool_use without starting with a
thinking block, or when any thinking block sent back has a signature this fake did not issue for it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

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

_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


# Body fields the API accepts only under a beta header (field → beta name).
BETA_FIELDS = {
    "context_management": "context-management-2025-06-27",
    "container": "code-execution-2025-08-25",
}
_NOT_COUNTED = ("max_tokens", "stream", "temperature", "stop_sequences", "metadata")
THINKING_TEXT = "The user wants an answer; a short one will do."


def signature(thinking: str) -> str:
    """The signature this fake puts on a thinking block (opaque to clients, checked when sent back)."""
    return "EqQBfake" + hashlib.sha256(b"fake-anthropic:" + thinking.encode()).hexdigest()


def thinking_refusal(body: dict[str, Any]) -> str | None:
    """Why the Messages API would refuse this request's extended thinking (None: it is fine)."""
    config = body.get("thinking") or {}
    if config.get("type") == "enabled":
        budget, cap = config.get("budget_tokens"), body.get("max_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if not isinstance(cap, int) or budget >= cap:
            return "`max_tokens` must be greater than `thinking.budget_tokens`."
        if body.get("temperature", 1) != 1 or "top_k" in body or body.get("top_p", 1) < 0.95:
            return "temperature may only be set to 1 when thinking is enabled."
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
        turns = [m for m in body.get("messages") or [] if m.get("role") == "assistant"]
        last = turns[-1].get("content") if turns else None
        uses_tool = isinstance(last, list) and any(b.get("type") == "tool_use" for b in last)
        if uses_tool and last[0].get("type") not in ("thinking", "redacted_thinking"):
            return (
                f"Expected `thinking` or `redacted_thinking`, but found `{last[0].get('type')}`. When "
                "`thinking` is enabled, a final `assistant` message must start with a thinking block."
            )
    for message in body.get("messages") or []:
        for block in message.get("content") if isinstance(message.get("content"), list) else []:
            if block.get("type") == "thinking" and block.get("signature") != signature(
                block.get("thinking", "")
            ):
                return "Invalid `signature` in `thinking` block"
    return None


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def usage_json(usage: FakeUsage) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` excludes cache reads and cache writes, reported apart."""
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.output_tokens,
        "service_tier": "standard",
    }


class FakeAnthropic(FakeServer):
    """``base_url`` is the root (the SDK adds ``/v1``). The key is checked as ``x-api-key`` or
    ``Authorization: Bearer`` when ``api_key`` is set; ``anthropic-version`` is required.

    ``full_delta_usage``: message_delta carries the whole usage (as newer API versions do), not
    only ``output_tokens``.
    """

    full_delta_usage = False
    counted_tokens: int | None = None  # what count_tokens answers; None: the body's length / 4

    def error(self, status: int, message: str | None) -> Plan:
        kind = _ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        payload = {"type": "error", "error": {"type": kind, "message": message or kind.replace("_", " ")}}
        return json_plan(status, payload, {"request-id": "req_fake"})

    def stream_error_frame(self, message: str) -> bytes:
        return _event({"type": "error", "error": {"type": "overloaded_error", "message": message}})

    def answer(
        self, request: RecordedRequest, text: str, usage: FakeUsage | None, fault: Fault | None = None
    ) -> tuple[Plan, FakeUsage | None]:
        if request.method != "POST" or request.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return self.error(404, "Not Found"), None
        keys = {
            request.headers.get("x-api-key"),
            request.headers.get("authorization", "").removeprefix("Bearer "),
        }
        if self.api_key is not None and self.api_key not in keys:
            return self.error(401, "invalid x-api-key"), None
        if "anthropic-version" not in request.headers:
            return self.error(400, "anthropic-version: header is required"), None
        try:
            body = json.loads(request.body)
        except ValueError:
            return self.error(400, "There was an issue with the JSON body of your request."), None
        betas = {b.strip() for b in request.headers.get("anthropic-beta", "").split(",")}
        for field, beta in BETA_FIELDS.items():
            if field in body and beta not in betas:
                return self.error(400, f"{field}: Extra inputs are not permitted"), None
        if request.path == "/v1/messages/count_tokens":
            for field in _NOT_COUNTED:
                if field in body:
                    return self.error(400, f"{field}: Extra inputs are not permitted"), None
            counted = self.counted_tokens if self.counted_tokens is not None else len(request.body) // 4
            return json_plan(200, {"input_tokens": counted}, {"request-id": "req_count"}), None
        refusal = thinking_refusal(body)
        if refusal is not None:
            return self.error(400, refusal), None
        thinks = (body.get("thinking") or {}).get("type") == "enabled"
        thought = split_words(THINKING_TEXT) if thinks else []
        tool = _tool(body)
        pieces, stop = split_words(text), "end_turn"
        if tool is not None:
            arguments = json.dumps(self.tool_input)
            pieces, stop = [arguments[i : i + 10] for i in range(0, len(arguments), 10)], "tool_use"
        elif (
            isinstance(cap := body.get("max_tokens"), int)
            and len(thought) + len(pieces) > cap
            and not (fault and fault.ignore_cap)
        ):
            pieces, stop = pieces[: max(0, cap - len(thought))], "max_tokens"
        reported = self.reply_usage(request, thought + pieces, usage)
        raw = UNSET if fault is None else fault.raw_usage
        number = len(self.requests)
        block: dict[str, Any] = {"type": "text", "text": ""}
        if tool is not None:
            block = {"type": "tool_use", "id": f"toolu_fake{number:06d}", "name": tool, "input": {}}
        message = {
            "id": f"msg_fake{number:06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [
                *(
                    [{"type": "thinking", "thinking": THINKING_TEXT, "signature": signature(THINKING_TEXT)}]
                    if thinks
                    else []
                ),
                block | ({"input": self.tool_input} if tool else {"text": "".join(pieces)}),
            ],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage_json(reported) if raw is UNSET else raw,
        }
        headers = {"request-id": f"req_fake{number:06d}"}
        if body.get("stream") is not True:
            return json_plan(200, message, headers), reported
        started = message | {
            "content": [],
            "stop_reason": None,
            "usage": usage_json(reported) | {"output_tokens": 1} if raw is UNSET else raw,
        }
        if tool is not None:
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
        else:
            deltas = [{"type": "text_delta", "text": p} for p in pieces]
        final_usage = (
            usage_json(reported) if self.full_delta_usage else {"output_tokens": reported.output_tokens}
        )
        if raw is not UNSET:
            final_usage = raw
        n = 1 if thinks else 0  # the index of the answer's block
        thinking_events = [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
            {"type": "ping"},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": p}} for p in thought),
            {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": signature(THINKING_TEXT)}},
            {"type": "content_block_stop", "index": 0},
        ]  # fmt: skip
        events = [
            {"type": "message_start", "message": started},
            *(thinking_events if thinks else []),
            {"type": "content_block_start", "index": n, "content_block": block},
            *([] if thinks else [{"type": "ping"}]),
            *({"type": "content_block_delta", "index": n, "delta": d} for d in deltas),
            {"type": "content_block_stop", "index": n},
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": final_usage,
            },
            {"type": "message_stop"},
        ]
        frames = tuple(_event(e) for e in events)
        return Plan(200, "text/event-stream; charset=utf-8", frames, streamed=True, headers=headers), reported

    def content_frame(self, plan: Plan) -> int:
        return 3  # message_start, content_block_start, ping, then the first content_block_delta


def _tool(body: dict[str, Any]) -> str | None:
    """The tool to call: the named tool_choice, else the first tool offered, unless tool_choice is none
    or (left to the model) the last turn holds only tool results: then it answers in text, as a model
    does after a tool result (so an SDK's tool loop ends)."""
    names = [t["name"] for t in body.get("tools") or [] if "name" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not names or choice.get("type") == "none":
        return None
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content")
    answered = (
        isinstance(content, list)
        and content
        and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )
    if answered and choice.get("type") == "auto":
        return None
    return str(choice["name"]) if choice.get("type") == "tool" else names[0]
