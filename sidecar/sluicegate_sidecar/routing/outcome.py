"""What a failed upstream attempt means: its class, whether to fall back, what the client gets. Pure.

No I/O and no state: the pipeline feeds it a status or an exception kind and acts on the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sluicegate_contract.schema import Fallback

# "429": rate limited or overloaded (429, 529). "5xx": any other 5xx. "timeout": no first byte in
# time (or 408). "connect": refused, reset, DNS or TLS failure. "auth": 401/403, the key is bad.
# "request": any other 4xx, the request's own fault. "bad_response": a 2xx (or 3xx) we cannot use.
FailureClass = Literal["429", "5xx", "timeout", "connect", "auth", "request", "bad_response"]
ExceptionKind = Literal["timeout", "connect", "reset", "bad_response"]


def classify(status: int | None, exc_kind: ExceptionKind | None = None) -> FailureClass | None:
    """The failure class of an attempt, or None when it succeeded (a 2xx with no exception).

    An exception kind wins over a status: a 200 whose body turned out unusable is "bad_response".
    """
    if exc_kind is not None:
        if exc_kind == "timeout":
            return "timeout"
        if exc_kind in ("connect", "reset"):
            return "connect"
        return "bad_response"
    if status is None:
        return "connect"  # no response and no reason: treat it as not reached
    if status in (429, 529):
        return "429"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if 500 <= status <= 599:
        return "5xx"
    if 400 <= status <= 499:
        return "request"
    if 200 <= status <= 299:
        return None
    return "bad_response"  # 1xx/3xx: the upstream client follows no redirects


def should_fall_back(
    failure: FailureClass,
    fallback: Fallback,
    attempt_no: int,
    *,
    after_first_byte: bool = False,
) -> bool:
    """Whether to try the next candidate after attempt number ``attempt_no`` (1-based) failed.

    Never after the first byte reached the client, never on "request" (the client's own 4xx goes
    back to it as is), and at most ``fallback.max_retries`` times. "auth" falls back whatever
    ``retry_on`` says (the failing key is benched by the health book, the next candidate is another
    connection). "bad_response" falls back when ``retry_on`` has "5xx": the upstream misbehaved.

    Pinned models need no flag here: a pinned resolution only lists candidates serving that very
    model (several connections of one provider kind), so falling back never switches model.
    """
    if after_first_byte or failure == "request" or attempt_no > fallback.max_retries:
        return False
    if failure == "auth":
        return True
    if failure == "bad_response":
        return "5xx" in fallback.retry_on
    return failure in fallback.retry_on


@dataclass(frozen=True, slots=True)
class ClientError:
    """The error the client gets when an attempt's failure is final (status, OpenAI type and code)."""

    status: int
    type: str
    code: str


def final_error(failure: FailureClass, upstream_status: int | None = None) -> ClientError:
    """The client-facing error once fallbacks are spent.

    "request" passes the upstream's own 4xx status through; "auth" is a generic 502 that names no
    key and repeats nothing of the upstream body.
    """
    if failure == "429":
        return ClientError(429, "rate_limit_error", "rate_limited")
    if failure == "timeout":
        return ClientError(504, "api_error", "upstream_timeout")
    if failure == "bad_response":
        return ClientError(502, "api_error", "bad_upstream_response")
    if failure == "request":
        status = upstream_status if upstream_status is not None and 400 <= upstream_status <= 499 else 400
        return ClientError(status, "invalid_request_error", "upstream_rejected_request")
    return ClientError(502, "api_error", "upstream_error")
