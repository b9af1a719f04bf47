"""Upstream errors as the client may see them: no upstream auth bodies, no fragment of the
connection's key nor key-like strings (``keyscrub``), bounded length. Pure; shared by every adapter
(``openai_error_info`` reads the OpenAI-style shapes).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .base import UpstreamErrorInfo
from .keyscrub import NO_KEY, KeyScrubber

GENERIC_AUTH_MESSAGE = "upstream rejected the provider credentials"
MAX_ERROR_MESSAGE = 300
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def error_info(
    status: int,
    message: object,
    code: object = None,
    *,
    credentials: bool = False,
    scrubber: KeyScrubber = NO_KEY,
) -> UpstreamErrorInfo:
    """Error fields safe for the client: no upstream auth bodies, no fragment of the key ``scrubber``
    was built from, no key-like strings, bounded length."""
    if credentials or status in (401, 403):
        return UpstreamErrorInfo(GENERIC_AUTH_MESSAGE, "authentication_error", "upstream_auth_failed")
    if status == 429:
        kind = "rate_limit_error"
    elif 400 <= status < 500:
        kind = "invalid_request_error"
    else:
        kind = "api_error"
    if isinstance(message, str) and message.strip():
        # Cut (to bound the scan), scrub, cut again: a fragment cut short at the first cut is still
        # found if 8+ characters of it are left, and a shorter one is no fragment.
        text = scrubber.scrub(message.strip()[: 2 * MAX_ERROR_MESSAGE])[:MAX_ERROR_MESSAGE]
    else:
        text = f"upstream returned HTTP {status}"
    code_text = code if isinstance(code, str) and _CODE.fullmatch(code) else None
    if code_text is not None and scrubber.scrub(code_text) != code_text:
        code_text = None
    return UpstreamErrorInfo(text, kind, code_text)


def openai_error_info(status: int, payload: Any, scrubber: KeyScrubber = NO_KEY) -> UpstreamErrorInfo:
    """From ``{"error": {"message", "type", "code"}}`` and the looser shapes compatible servers send."""
    message: object = None
    code: object = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code") or error.get("type")
        elif isinstance(error, str):
            message = error
        else:  # Mistral: {"object": "error", "message": str | {"detail": [...]}}; FastAPI: {"detail": ...}
            message = payload.get("message", payload.get("detail"))
            code = payload.get("type")
        if message is not None and not isinstance(message, str):
            message = msgspec.json.encode(message).decode()
    return error_info(status, message, code, scrubber=scrubber)
