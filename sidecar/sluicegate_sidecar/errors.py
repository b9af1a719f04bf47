"""Errors in the OpenAI envelope ``{"error": {"message", "type", "param", "code"}}``.

``ApiError`` carries status, type and code; ``error_body`` renders it, ``sse_error`` as a final SSE event.
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
