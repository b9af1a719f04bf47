"""A fake Gemini API: models/{model}:generateContent and :streamGenerateContent (test support).

``?alt=sse`` streams ``data: {...}`` frames separated by CRLF CRLF, as Google sends them, with no
terminal sentinel: the last frame carries ``finishReason`` and the full ``usageMetadata``. Without
``alt=sse`` the stream is one JSON array, sent element by element.

Thinking as documented: with ``generationConfig.thinkingConfig.includeThoughts`` the reply starts
with the thought summary (``THOUGHT_TEXT``, parts with ``"thought": true``, streamed word by word
before the answer), counted in ``thoughtsTokenCount`` (not in ``candidatesTokenCount``; both within
``maxOutputTokens``, as Gemini counts them), and a function call carries a ``thoughtSignature``
(``thought_signature``). A request is refused (400) when it sets both ``thinkingLevel`` and
``thinkingBudget``, a ``thinkingLevel`` for a model before Gemini 3, or a budget outside 0..32768.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from tests.support.fakes_server import UNSET, FakeServer, FakeUsage, Fault, Plan, RecordedRequest, split_words

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_PATH = re.compile(r"/(?:v1|v1beta)/models/([^/:]+):(generateContent|streamGenerateContent)")
THOUGHT_TEXT = "The user wants a short answer, so I will give one."
_LEVELED = re.compile(r"gemini-(\d+)")
_BAD_KEY_DETAILS = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]


def thought_signature(thought: str) -> str:
    """The signature this fake puts on a function call made after thinking (opaque to clients)."""
    return "CiQBfake" + hashlib.sha256(b"fake-gemini:" + thought.encode()).hexdigest()


def thinking_refusal(model: str, config: dict[str, Any]) -> str | None:
    """Why generateContent would refuse this ``thinkingConfig`` (None: it is fine)."""
    family = _LEVELED.match(model)
    if "thinkingLevel" in config and "thinkingBudget" in config:
        return "You can only set one of thinking budget and thinking level."
    if "thinkingLevel" in config and (family is None or int(family.group(1)) < 3):
        return "Thinking level is not supported for this model."
    budget = config.get("thinkingBudget", -1)
    if not isinstance(budget, int) or not -1 <= budget <= 32768:
        return "The thinking budget is out of range."
    return None


def signature_refusal(body: dict[str, Any]) -> str | None:
    """A thought signature sent back that this fake did not issue (nor the documented sentinel)."""
    valid = (thought_signature(THOUGHT_TEXT), "skip_thought_signature_validator")
    for turn in body.get("contents") or []:
        for part in turn.get("parts") or []:
            if "thoughtSignature" in part and part["thoughtSignature"] not in valid:
                return "Thought signature is not valid."
    return None


def usage_json(usage: FakeUsage, thoughts: int = 0) -> dict[str, Any]:
    """Gemini's usageMetadata: ``promptTokenCount`` includes ``cachedContentTokenCount`` (sent if > 0);
    ``thoughts`` of the output tokens are thinking (``thoughtsTokenCount``, sent if > 0)."""
    metadata: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens - thoughts,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.input_tokens}],
    }
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    if usage.cached_tokens:
        metadata["cachedContentTokenCount"] = usage.cached_tokens
        metadata["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached_tokens}]
    return metadata


class FakeGemini(FakeServer):
    """``base_url`` is the root. The key is checked as ``x-goog-api-key`` or ``?key=`` when ``api_key``
    is set: a missing key gets 403, a wrong one 400 ``API_KEY_INVALID`` (as Google answers)."""

    def error(self, status: int, message: str | None, details: list[Any] | None = None) -> Plan:
        code = _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        error: dict[str, Any] = {
            "code": status,
            "message": message or code.replace("_", " ").lower(),
            "status": code,
        }
        if details:
            error["details"] = details
        return Plan(status, "application/json; charset=UTF-8", (json.dumps({"error": error}).encode(),))

    def stream_error_frame(self, message: str) -> bytes:
        return (
            b"data: "
            + json.dumps({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}}).encode()
            + b"\r\n\r\n"
        )

    def answer(
        self, request: RecordedRequest, text: str, usage: FakeUsage | None, fault: Fault | None = None
    ) -> tuple[Plan, FakeUsage | None]:
        match = _PATH.fullmatch(request.path)
        if request.method != "POST" or match is None:
            return self.error(404, "Method not found."), None
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if self.api_key is not None and key is None:
            return self.error(403, "Method doesn't allow unregistered callers. Please use an API key."), None
        if self.api_key is not None and key != self.api_key:
            return self.error(400, "API key not valid. Please pass a valid API key.", _BAD_KEY_DETAILS), None
        try:
            body = json.loads(request.body)
        except ValueError:
            return self.error(400, "Invalid JSON payload received."), None
        model, method = match.groups()
        thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
        refusal = thinking_refusal(model, thinking) or signature_refusal(body)
        if refusal is not None:
            return self.error(400, refusal), None
        thought = split_words(THOUGHT_TEXT) if thinking.get("includeThoughts") else []
        tool = _tool(body)
        pieces, finish = split_words(text), "STOP"
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        if tool is not None:
            pieces = [json.dumps(self.tool_input)]
        elif (
            isinstance(limit, int) and len(thought) + len(pieces) > limit and not (fault and fault.ignore_cap)
        ):
            pieces, finish = pieces[: max(0, limit - len(thought))], "MAX_TOKENS"
        reported = self.reply_usage(request, thought + pieces, usage)
        head = {"modelVersion": model, "responseId": f"fake{len(self.requests):06d}"}

        def candidate(parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
            content = {"content": {"parts": parts, "role": "model"}, "index": 0}
            return {"candidates": [content | ({"finishReason": finish} if last else {})]}

        thoughts = [{"text": p, "thought": True} for p in thought]
        if tool is not None:
            call: dict[str, Any] = {"functionCall": {"name": tool, "args": self.tool_input}}
            if thought:
                call["thoughtSignature"] = thought_signature(THOUGHT_TEXT)
            answer = [call]
        else:
            answer = [{"text": p} for p in pieces]
        if method == "generateContent":
            if thoughts:
                thoughts = [{"text": THOUGHT_TEXT, "thought": True}]
            if tool is None:
                answer = [{"text": "".join(pieces)}]
            responses = [candidate(thoughts + answer, True)]
        else:
            streamed = thoughts + answer
            responses = [candidate([p], i == len(streamed) - 1) for i, p in enumerate(streamed)]
        partial = {"promptTokenCount": reported.input_tokens, "totalTokenCount": reported.input_tokens}
        final = usage_json(reported, min(len(thought), reported.output_tokens))
        if fault is not None and fault.raw_usage is not UNSET:  # a bad usageMetadata in every chunk
            partial = final = fault.raw_usage
        replies = [r | {"usageMetadata": partial} | head for r in responses[:-1]]
        replies.append(responses[-1] | {"usageMetadata": final} | head)
        if method == "generateContent":
            return Plan(200, "application/json; charset=UTF-8", (json.dumps(replies[0]).encode(),)), reported
        if request.query.get("alt") == "sse":
            frames = tuple(b"data: " + json.dumps(r).encode() + b"\r\n\r\n" for r in replies)
            return Plan(200, "text/event-stream", frames, streamed=True), reported
        items = [("[" if i == 0 else ",\r\n") + json.dumps(r) for i, r in enumerate(replies)]
        frames = tuple(item.encode() for item in items) + (b"]",)
        return Plan(200, "application/json; charset=UTF-8", frames, streamed=True), reported

    def content_frame(self, plan: Plan) -> int:
        return 0 if plan.content_type == "text/event-stream" else 1  # in a JSON array: an element after "["


def _tool(body: dict[str, Any]) -> str | None:
    """The function to call: the first declared (or allowed) one, unless the calling mode is NONE."""
    names = [f["name"] for t in body.get("tools") or [] for f in t.get("functionDeclarations") or []]
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if not names or config.get("mode") == "NONE":
        return None
    allowed = config.get("allowedFunctionNames") or names
    return str(allowed[0])
