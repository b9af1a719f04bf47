"""A reply in one write: uvicorn's request/response cycle, with a complete reply's head sent with its body.

uvicorn writes a response's head (status line and headers) as soon as ``http.response.start`` arrives
and its body with ``http.response.body``: two writes, two TCP segments, and on loopback the receiving
side's TCP work done twice in the sidecar's time, for every reply (the head's write was 5 % of the
sidecar's CPU at c=32). Here a reply whose length is known (``content-length``, or none to come: HEAD,
204, 304) keeps its head until its first body message and writes both at once; a chunked reply (a
stream) gets its head at once, as before, so a client sees a stream's status without waiting for its
first event. A head still held when the reply completes without a body write (HEAD) is written then.

Each header is checked as uvicorn checks it (no control or separator characters in a name, no control
characters in a value), by one search over all names and one over all values: both patterns are
character classes, so a match in the joined bytes is a match in one of them.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)


class OneWriteCycle(RequestResponseCycle):
    """``RequestResponseCycle`` whose ``send`` writes a complete reply once (module docstring)."""

    _head: bytes = b""

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self._start(message)
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")

    def _start(self, message: Any) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
        headers = self.default_headers + list(message.get("headers", []))
        if HEADER_RE.search(b"".join(name for name, _ in headers)):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join(value for _, value in headers)):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status_code]]
        has_connection_close = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
                self.keep_alive = False
                has_connection_close = True
            content.extend((name, b": ", value, b"\r\n"))
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status_code not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        if self.chunked_encoding:
            self.transport.write(b"".join(content))
        else:
            self._head = b"".join(content)

    def _body(self, body: bytes, more_body: bool) -> None:
        head = self._head
        self._head = b""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            if head:
                self.transport.write(head)
        elif self.chunked_encoding:
            content = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
            if not more_body:
                content.append(b"0\r\n\r\n")
            self.transport.write(b"".join(content))
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            if head or body:
                self.transport.write(head + body if head else body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
