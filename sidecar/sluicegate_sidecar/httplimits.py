"""Connection limits uvicorn's httptools protocol lacks (faults 5, 32): a cap on request-header bytes,
a deadline for a request's headers, and a cap on open connections per listener.

httptools keeps an unfinished header in memory however long it grows (20 connections of 16 MiB each:
+350 MiB), and a connection that never sends a byte is never timed out; so both ports could be
exhausted — memory by a few connections, file descriptors by idle ones — by anything that reaches the
ops port, which listens on all interfaces. Here each listener's protocol counts the bytes of the
headers it is reading and answers 431 past ``max_header_bytes``, closes a connection whose headers
are not complete ``header_timeout`` seconds after they began (or after it opened, with nothing sent:
408 when some arrived), and closes at once a connection accepted beyond ``max_connections``. The
limits apply to headers only: a slow body is the API's receive deadline, a slow response stream is fine.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .httpcycle import OneWriteCycle
from .wire import BODY_IN

log = logging.getLogger("sluicegate.sidecar")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    max_connections: int = 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``LIMITS`` enforced; one subclass per listener (``protocol_for``)."""

    LIMITS: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # reading a request's headers (or waiting for the first byte of one)
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._headers_since: float | None = None  # when the awaited headers began (None: not waiting)
        self._refused = False
        self._opened = 0.0
        self._message_ended = False  # a request's end was parsed in the read being handled

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.LIMITS.max_connections and not self._evict_idle():
            self._refused = True  # never registered: closed before it holds anything but its socket
            self.transport = transport
            transport.abort()
            return
        self._opened = self.loop.time()
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def _idle(self) -> bool:
        """Waiting for a request's headers, none in progress: closing it loses no request."""
        return self._in_headers and (self.cycle is None or self.cycle.response_complete)

    def _evict_idle(self) -> bool:
        """At the cap, the oldest idle connection makes room (held-open idle ones cannot lock a
        listener, probes included, out); False when every connection is busy."""
        idle = [c for c in self.connections if isinstance(c, BoundedHttpToolsProtocol) and c._idle()]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._opened)
        oldest.transport.close()
        self.connections.discard(oldest)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        if self._in_headers and self._headers_since is None:
            self._arm()
        self._message_ended = False
        super().data_received(data)
        # Counted after parsing, so a read that completes the headers, or ends a body (and may begin
        # the next request), is not counted against them: what httptools holds of an unfinished
        # header is at most the cap plus two reads.
        if self._in_headers and not self._message_ended and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.LIMITS.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle and not self.access_log:
            # The cycle was just made and its task not yet run: it becomes the one-write cycle
            # (``httpcycle``; uvicorn makes its cycles itself, with no way to name another class).
            cycle.__class__ = OneWriteCycle

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and not cycle.more_body:
            cycle.scope[BODY_IN] = True  # type: ignore[literal-required]  # see wire.BODY_IN
        self._in_headers = True  # the next request's headers, when they come, are counted afresh
        self._header_bytes = 0
        self._message_ended = True

    def _arm(self) -> None:
        """Start the header deadline. The timer is lazy: one already pending is kept and, when it
        fires early for this wait, set again for the rest (a keep-alive connection's requests do not
        each set and cancel a timer: the hot path)."""
        self._headers_since = self.loop.time()
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.LIMITS.header_timeout, self._header_deadline)

    def _disarm(self) -> None:
        self._headers_since = None  # a pending timer finds nothing to time out

    def _stop_timer(self) -> None:
        self._headers_since = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        since = self._headers_since
        if since is None:
            return
        rest = since + self.LIMITS.header_timeout - self.loop.time()
        if rest > 0:  # set for an earlier wait: this one has time left
            self._header_timer = self.loop.call_later(rest, self._header_deadline)
            return
        self._headers_since = None
        self._headers_too_slow()

    def _headers_too_slow(self) -> None:
        if not self._in_headers or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a reply still streams: a request pipelined behind it waits, it is not late
        elif self._header_bytes:
            self._refuse(408, "Request Timeout")
        else:
            self.transport.close()  # opened and never used: nothing to answer

    def _refuse(self, status: int, reason: str) -> None:
        self._stop_timer()
        body = reason.encode("ascii")
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def protocol_for(limits: ConnectionLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class of one listener (uvicorn builds one instance per connection)."""
    return type("BoundedHttpTools", (BoundedHttpToolsProtocol,), {"LIMITS": limits})


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (as Go programs do); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %s: %s", soft, exc)
    return soft
