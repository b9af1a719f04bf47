"""The Responses API passed through to upstreams that speak it (OpenAI, Azure OpenAI, OpenAI-compatible
servers, the mock): the body goes unchanged but for the model and routing fields, the reply and its
event stream come back unchanged; only usage, the end and errors are read. Pure.

The upstream keeps state (``store``, ``previous_response_id``) as it does for a direct client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .base import BadUpstreamResponse, Reply, Usage
from .errorinfo import openai_error_info
from .keyscrub import NO_KEY, KeyScrubber
from .responses_chat import refuse_background
from .responses_stream import ResponsesEvents
from .sse import RelayState, event_fields
from .usagefields import UsageReader


def responses_body(body: dict[str, Any], request: Mapping[str, Any], stream: bool) -> bytes:
    """``body`` (the client's request, model replaced, routing and credential fields removed, no
    ``stream_options``) with the Responses API's own stream options back (obfuscation)."""
    refuse_background(request)
    options = request.get("stream_options")
    if stream and isinstance(options, Mapping):
        body["stream_options"] = dict(options)
    return msgspec.json.encode(body)


# Usage objects are decoded as plain JSON and read by ``usagefields``: a bad count is an anomaly
# to charge a bounded figure for, never a reason to refuse a reply the client is waiting for.
class _Response(msgspec.Struct):
    output: list[Any]
    status: str | None = None
    usage: Any = None
    error: Any = None


class _Lifecycle(msgspec.Struct):
    status: str | None = None
    usage: Any = None
    error: Any = None


class _Event(msgspec.Struct):
    type: str = ""
    sequence_number: int | None = None
    delta: Any = None
    response: _Lifecycle | None = None
    code: Any = None
    message: Any = None
    error: Any = None


def _usage(raw: object) -> Usage | None:
    """Usage from a Response's ``usage`` (None: none reported). ``input_tokens`` and
    ``output_tokens`` are always sent (reasoning tokens are part of the output); bad counts are flagged."""
    if raw is None:
        return None
    reader = UsageReader(raw)
    inputs = reader.count("input_tokens")
    outputs = reader.count("output_tokens")
    details = raw.get("input_tokens_details") if isinstance(raw, dict) else None
    cached = 0
    if isinstance(details, dict):
        inner = UsageReader(details)
        cached = inner.count("cached_tokens", 0)
        reader.anomaly = reader.anomaly or inner.anomaly
    return reader.build(Usage(inputs, outputs, min(cached, inputs)), ("input_tokens",), ("output_tokens",))


def parse_responses_reply(body: bytes) -> Reply:
    """A 2xx Response object, unchanged, with its usage and status."""
    try:
        response = msgspec.json.decode(body, type=_Response)
    except msgspec.DecodeError as exc:
        raise BadUpstreamResponse("upstream reply is not a Response object") from exc
    return Reply(body, _usage(response.usage), response.status)


_ENDS = frozenset({"response.completed", "response.incomplete"})


class ResponsesPassthroughRelay(RelayState):
    """Passes the Responses event stream through unchanged; reads usage from the final response,
    generated characters from ``*.delta`` events and the last ``sequence_number``.

    ``completed`` turns true with the final event (``response.completed`` / ``response.incomplete``),
    which the stream relay then holds until the ledger line is written.
    """

    def __init__(self, scrubber: KeyScrubber = NO_KEY) -> None:
        super().__init__()
        self.events = ResponsesEvents()
        self._scrubber = scrubber

    def error_event(self, message: str, code: str) -> bytes:
        return self.events.error_event(message, code)

    def feed(self, data: bytes) -> bytes:
        events = self._splitter.feed(data)
        if len(events) == 1:
            return self._read(events[0])
        return b"".join([self._read(raw) for raw in events])

    def finish(self) -> bytes:
        """From a stream that closed without its last blank line: that last event, if it is whole."""
        rest = self._splitter.rest()
        if not rest.strip() or self._ended:
            return b""
        try:
            return self._read(rest.rstrip(b"\r\n") + b"\n\n")
        except BadUpstreamResponse:
            return b""

    def _read(self, raw: bytes) -> bytes:
        """The event as the client gets it: unchanged, except that upstream error text is made safe."""
        _, payload = event_fields(raw)
        if payload is None or self._ended:
            return raw
        try:
            event = msgspec.json.decode(payload, type=_Event)
        except msgspec.ValidationError:  # an unusual but well-formed event: not ours to judge,
            return self._unusual(raw, msgspec.json.decode(payload))  # unless it ends or is an error
        except msgspec.DecodeError as exc:
            raise BadUpstreamResponse("upstream sent a stream event that is not JSON") from exc
        if event.sequence_number is not None:
            self.events.seen(event.sequence_number)
        if isinstance(event.delta, str) and event.type.endswith(".delta"):
            self._output_chars += len(event.delta)
        if event.response is not None and event.response.usage is not None:
            self._usage = _usage(event.response.usage)
        if event.type in _ENDS:
            self._ended = True
        elif event.type == "response.failed":
            error = event.response.error if event.response is not None else None
            self._error = openai_error_info(
                500, {"error": error if isinstance(error, dict) else {}}, self._scrubber
            )
            return _with_safe_error(payload, self._error.message, self._error.code)
        elif event.type == "error":
            error = event.error if isinstance(event.error, dict) else {"message": event.message}
            self._error = info = openai_error_info(
                500, {"error": {"code": event.code, **error}}, self._scrubber
            )
            if event.sequence_number is not None:
                self.events.next_sequence = event.sequence_number  # the replacement keeps its number
            return self.events.error_event(info.message, info.code or "upstream_error")
        return raw

    def _unusual(self, raw: bytes, event: object) -> bytes:
        kind = str(event.get("type")) if isinstance(event, dict) else ""
        if isinstance(event, dict) and kind in ("error", "response.failed"):  # never passed unread
            error = event.get("error")
            loose = error if isinstance(error, dict) else {"message": event.get("message")}
            self._error = info = openai_error_info(500, {"error": loose}, self._scrubber)
            return self.events.error_event(info.message, info.code or "upstream_error")
        self._ended = kind in _ENDS
        return raw


def _with_safe_error(payload: bytes, message: str, code: str | None) -> bytes:
    """A ``response.failed`` event with its error replaced by the safe one."""
    event = msgspec.json.decode(payload)
    if isinstance(event.get("response"), dict):
        event["response"]["error"] = {"code": code or "server_error", "message": message}
    return b"event: response.failed\ndata: " + msgspec.json.encode(event) + b"\n\n"
