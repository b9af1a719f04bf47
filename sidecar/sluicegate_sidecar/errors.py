"""Errors in the client's own envelope: OpenAI's ``{"error": {"message", "type", "param", "code"}}``
or, on Anthropic's routes, ``{"type": "error", "error": {"type", "message"}}``.

``ApiError`` carries status, type and code; ``error_body`` / ``anthropic_error_body`` render it,
``sse_error`` as the last event of an OpenAI stream (relay writes Anthropic's ``event: error``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})


def error_body(error: ApiError) -> bytes:
    return msgspec.json.encode(
        {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    )


# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors); 402 is its billing
# error, which is what a budget refusal is to an Anthropic client.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    """The Anthropic ``error.type`` for an HTTP status."""
    kind = _ANTHROPIC_TYPES.get(status)
    if kind is None:
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return kind


def _anthropic_payload(error: ApiError, request_id: str | None) -> dict[str, object]:
    inner: dict[str, object] = {"type": anthropic_error_type(error.status), "message": error.message}
    if error.code:  # the SDKs read it as ``error_code`` (``error.details.error_code``)
        inner["details"] = {"error_code": error.code}
    payload: dict[str, object] = {"type": "error", "error": inner}
    if request_id:
        payload["request_id"] = request_id
    return payload


def anthropic_error_body(error: ApiError, request_id: str | None = None) -> bytes:
    """``error`` in Anthropic's envelope, with the status's Anthropic type and our code as details."""
    return msgspec.json.encode(_anthropic_payload(error, request_id))


def sse_error(message: str, code: str, type: str = "api_error") -> bytes:
    """The last event of a stream that failed after its first byte: never a silent clean end."""
    payload = msgspec.json.encode({"error": {"message": message, "type": type, "param": None, "code": code}})
    return b"data: " + payload + b"\n\n"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def budget_exceeded(policy: str, scope: str) -> ApiError:
    return ApiError(
        402,
        f"Budget exceeded: policy '{policy}' ({scope}) has no room left for this request.",
        type="budget_exceeded",
        code="budget_exceeded",
    )


def kill_switch(policy: str) -> ApiError:
    return ApiError(
        403, f"Requests are switched off by budget policy '{policy}'.", type="kill_switch", code="kill_switch"
    )


def authority_unavailable(policy: str) -> ApiError:
    """Fleet mode: the lease is spent or expired and the budget authority cannot be reached."""
    return ApiError(
        503,
        f"The budget authority for policy '{policy}' cannot be reached and this sidecar's lease is "
        "spent; retry shortly.",
        type="api_error",
        code="budget_authority_unavailable",
        headers={"retry-after": "2"},
    )
