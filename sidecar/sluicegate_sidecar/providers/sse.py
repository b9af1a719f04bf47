"""Server-sent events: split an upstream byte stream into whole events, read their fields, frame new
ones, and the state every stream relay keeps. Pure: bytes in, bytes out; at most one incomplete event held.
"""

from __future__ import annotations

import re

from .base import BadUpstreamResponse, UpstreamErrorInfo, Usage

# An event ends at an empty line: two line endings in a row, each CRLF, LF or CR (a lone CR that is
# followed by LF is the first half of CRLF, not a line ending of its own).
_BOUNDARY = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
_LINE_END = re.compile(rb"\r\n|\r|\n")

MAX_EVENT_BYTES = 8 * 1024 * 1024
DONE_EVENT = b"data: [DONE]\n\n"


def data_event(payload: bytes) -> bytes:
    """One SSE event carrying ``payload`` (which must hold no line breaks, as compact JSON never does)."""
    return b"data: " + payload + b"\n\n"


class EventSplitter:
    """Cuts arbitrarily split bytes into complete events, each returned with its terminator, unchanged."""

    __slots__ = ("_buffer", "_scan_from")

    def __init__(self) -> None:
        self._buffer = b""
        self._scan_from = 0

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        events: list[bytes] = []
        start = 0
        if b"\r" not in buffer:  # the usual case, LF line endings only: a plain substring search
            while (end := buffer.find(b"\n\n", max(start, self._scan_from))) != -1:
                events.append(buffer[start : end + 2])
                start = end + 2
        else:
            while match := _BOUNDARY.search(buffer, max(start, self._scan_from)):
                end = match.end()
                if end == len(buffer) and buffer.endswith(b"\r"):
                    break  # the CR may be the first half of a CRLF still in flight: wait for it
                events.append(buffer[start:end])
                start = end
        rest = buffer[start:]
        if len(rest) > MAX_EVENT_BYTES:
            raise BadUpstreamResponse("upstream sent an oversized stream event")
        self._buffer = rest
        # A boundary is at most four bytes long, so the next search need not look further back.
        self._scan_from = max(0, len(rest) - 3)
        return events

    def rest(self) -> bytes:
        """The bytes of an incomplete last event (called when the upstream has closed)."""
        rest, self._buffer, self._scan_from = self._buffer, b"", 0
        return rest


def event_fields(raw: bytes) -> tuple[bytes, bytes | None]:
    """The ``event`` name (``b""`` if none) and the joined ``data`` lines (None if none) of one event."""
    body = raw.rstrip(b"\r\n")
    if body.startswith(b"data:") and b"\n" not in body and b"\r" not in body:
        value = body[5:]
        return b"", value[1:] if value.startswith(b" ") else value
    name = b""
    data: list[bytes] = []
    for line in _LINE_END.split(body):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    return name, b"\n".join(data) if data else None


class RelayState:
    """What every relay tracks: usage, generated characters, a mid-stream error, a proper end."""

    def __init__(self) -> None:
        self._splitter = EventSplitter()
        self._usage: Usage | None = None
        self._error: UpstreamErrorInfo | None = None
        self._output_chars = 0
        self._ended = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def completed(self) -> bool:
        """True once the upstream signalled a proper end and sent no error event."""
        return self._ended and self._error is None

    @property
    def output_chars(self) -> int:
        return self._output_chars

    @property
    def error(self) -> UpstreamErrorInfo | None:
        """The error event the upstream sent mid-stream, if any (safe to show the client)."""
        return self._error
