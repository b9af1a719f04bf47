"""A fake Gemini API: models/{model}:generateContent and :streamGenerateContent (test support).

``?alt=sse`` streams ``data: {...}`` frames separated by CRLF CRLF, as Google sends them, with no
terminal sentinel: the last frame carries ``finishReason`` and the full ``usageMetadata``. Without
``alt=sse`` the stream is one JSON array, sent element by element.
"""

from __future__ import annotations

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
_BAD_KEY_DETAILS = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]


def usage_json(usage: FakeUsage) -> dict[str, Any]:
    """Gemini's usageMetadata: ``promptTokenCount`` includes ``cachedContentTokenCount`` (sent if > 0)."""
    metadata: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.input_tokens}],
    }
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
        tool = _tool(body)
        pieces, finish = split_words(text), "STOP"
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        if tool is not None:
            pieces = [json.dumps(self.tool_input)]
        elif isinstance(limit, int) and len(pieces) > limit and not (fault and fault.ignore_cap):
            pieces, finish = pieces[:limit], "MAX_TOKENS"
        reported = self.reply_usage(request, pieces, usage)
        head = {"modelVersion": model, "responseId": f"fake{len(self.requests):06d}"}

        def candidate(parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
            content = {"content": {"parts": parts, "role": "model"}, "index": 0}
            return {"candidates": [content | ({"finishReason": finish} if last else {})]}

        if tool is not None:
            responses = [candidate([{"functionCall": {"name": tool, "args": self.tool_input}}], True)]
        elif method == "generateContent":
            responses = [candidate([{"text": "".join(pieces)}], True)]
        else:
            responses = [candidate([{"text": p}], i == len(pieces) - 1) for i, p in enumerate(pieces)]
        partial = {"promptTokenCount": reported.input_tokens, "totalTokenCount": reported.input_tokens}
        final = usage_json(reported)
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
