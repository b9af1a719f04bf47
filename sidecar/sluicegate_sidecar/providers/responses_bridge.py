"""The Responses API for providers that speak none (Anthropic, Gemini): the request is rewritten as a
chat request (``responses_chat.chat_request``) and handed to the provider's own chat translation; the
reply and the stream come back through it as chat and are rewritten here as a Response and as
Responses events. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .base import BadUpstreamResponse, Reply, StreamRelay, UpstreamErrorInfo, Usage
from .responses_chat import response_from_chat
from .responses_stream import ChatToResponses, ResponsesEvents


class BridgedResponsesRelay:
    """The provider's chat relay, its chat chunks rewritten as Responses events. ``completed`` turns
    true with the provider's end, in the same ``feed`` as the events that close the response."""

    def __init__(self, inner: StreamRelay, model: str, request: Mapping[str, Any]) -> None:
        self._inner = inner
        self.events = ResponsesEvents()
        self._rewrite = ChatToResponses(model, request, self.events)

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    @property
    def completed(self) -> bool:
        return self._inner.completed and self._rewrite.done

    @property
    def output_chars(self) -> int:
        return self._inner.output_chars

    @property
    def error(self) -> UpstreamErrorInfo | None:
        error = getattr(self._inner, "error", None)
        return error if isinstance(error, UpstreamErrorInfo) else None

    def feed(self, data: bytes) -> bytes:
        return self._rewrite.feed(self._inner.feed(data))

    def finish(self) -> bytes:
        return self._rewrite.feed(self._inner.finish())

    def error_event(self, message: str, code: str) -> bytes:
        return self.events.error_event(message, code)


def responses_reply(reply: Reply, model: str) -> Reply:
    """A translated chat reply (``Reply`` from the provider's chat parse) as a Response object."""
    try:
        completion = msgspec.json.decode(reply.body)
        response = response_from_chat(completion, model, reply.usage)
    except (msgspec.DecodeError, AttributeError, TypeError) as exc:
        raise BadUpstreamResponse("upstream reply could not be read as a response") from exc
    return Reply(msgspec.json.encode(response), reply.usage, response["status"])
