"""The offline mock's Responses API: a Responses request is answered as the mock answers the same
conversation in chat, rewritten as a Response object or as the Responses event stream. Pure.

So the mock's chat behaviour (its text, tool calls, structured output) is its Responses behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ..providers.base import UnsupportedOperation
from ..providers.responses_chat import chat_request, response_from_chat, usage_from_chat
from ..providers.responses_stream import ChatToResponses, ResponsesEvents


def mock_chat_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The chat request the mock answers for a Responses ``request``; ``ValueError`` (message, param)
    when it cannot be translated (the mock keeps no state: no ``previous_response_id``)."""
    stream = request.get("stream") is True
    try:
        return chat_request(request, "mock", stream=stream)
    except UnsupportedOperation as exc:
        raise ValueError(str(exc), "input") from None


def responses_chunks(
    request: Mapping[str, Any], status: int, chunks: tuple[bytes, ...], streamed: bool
) -> tuple[bytes, ...]:
    """The mock's chat reply (``chunks``) as the Responses reply; errors are the same envelope."""
    model = str(request.get("model") or "")
    if status != 200:
        return chunks
    if not streamed:
        completion = msgspec.json.decode(b"".join(chunks))
        response = response_from_chat(completion, model, usage_from_chat(completion.get("usage")))
        return (msgspec.json.encode(response),)
    rewrite = ChatToResponses(model, request, ResponsesEvents())
    frames = [rewrite.feed(chunk) for chunk in chunks]
    return tuple(frame for frame in frames if frame)
