"""Building OpenAI-shaped upstream requests: the client body cleaned of routing and credential fields
(fault 3), the output cap in the field each upstream takes, usage asked for on streams.

Pure and on the hot path; the OpenAI adapter and every adapter speaking OpenAI's wire format use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .base import Operation, UnsupportedOperation, UpstreamRequest, smaller_cap
from .openai_responses import responses_body

JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}

_PATHS: Mapping[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
}
# Client body fields that could pick the upstream, its credentials or a gateway's behaviour (fault 3).
_STRIPPED = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "api_type",
        "extra_headers",
        "extra_query",
        "extra_body",
        "custom_llm_provider",
        "custom_host",
        "organization",
        "deployment_id",
        "headers",
        "mock_response",
        "fallbacks",
        "virtual_key",
    }
)
_STRIPPED_PREFIXES = ("litellm_", "portkey_", "azure_", "aws_", "vertex_")


def client_wants_usage(request: Mapping[str, Any]) -> bool:
    options = request.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def output_cap(request: Mapping[str, Any]) -> int | None:
    """The client's output cap in a raw request body (``smaller_cap``)."""
    return smaller_cap(request.get("max_tokens"), request.get("max_completion_tokens"))


def openai_body(
    request: Mapping[str, Any],
    model: str,
    stream: bool,
    *,
    stream_usage_option: bool = True,
    max_tokens_only: bool = False,
    completion_tokens_field: bool = False,
) -> dict[str, Any]:
    """The client body with ``model`` replaced, routing and credential fields removed, usage asked for.

    The output cap goes in ``max_tokens`` with ``max_tokens_only``, in ``max_completion_tokens`` with
    ``completion_tokens_field`` (OpenAI's reasoning models refuse ``max_tokens``), else as the client
    sent it."""
    body = {
        key: value
        for key, value in request.items()
        if key not in _STRIPPED and not key.startswith(_STRIPPED_PREFIXES)
    }
    body["model"] = model
    if stream:
        body["stream"] = True
        if stream_usage_option:
            options = request.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, Mapping) else {}),
                "include_usage": True,
            }
        else:
            body.pop("stream_options", None)
    else:
        body.pop("stream_options", None)
        if "stream" in body:
            body["stream"] = False
    if max_tokens_only and "max_completion_tokens" in body:
        _merge_cap(body, "max_completion_tokens", "max_tokens")
    elif completion_tokens_field and "max_tokens" in body:
        _merge_cap(body, "max_tokens", "max_completion_tokens")
    return body


def _merge_cap(body: dict[str, Any], source: str, into: str) -> None:
    """Move the output cap in ``source`` to ``into``, keeping the smaller of the two if both are set."""
    cap = body.pop(source)
    current = body.get(into)
    body[into] = cap if not isinstance(current, int) or not isinstance(cap, int) else min(cap, current)


def build_openai_request(
    url: str,
    headers: Mapping[str, str],
    request: Mapping[str, Any],
    model: str,
    stream: bool,
    *,
    stream_usage_option: bool = True,
    max_tokens_only: bool = False,
    completion_tokens_field: bool = False,
) -> UpstreamRequest:
    """A POST of the client's OpenAI-shaped body to ``url`` (see ``openai_body``)."""
    body = openai_body(
        request,
        model,
        stream,
        stream_usage_option=stream_usage_option,
        max_tokens_only=max_tokens_only,
        completion_tokens_field=completion_tokens_field,
    )
    return UpstreamRequest("POST", url, headers, msgspec.json.encode(body))


def build_responses_request(
    url: str, headers: Mapping[str, str], request: Mapping[str, Any], model: str, stream: bool
) -> UpstreamRequest:
    """A POST of the client's Responses API request to ``url``, passed through (see ``openai_body``)."""
    body = openai_body(request, model, stream, stream_usage_option=False)
    return UpstreamRequest("POST", url, headers, responses_body(body, request, stream))


def openai_path(op: Operation, provider: str) -> str:
    path = _PATHS.get(op)
    if path is None:
        raise UnsupportedOperation(f"{provider} connections do not serve /v1/{op}")
    return path
