"""The machinery every fake provider shares: a uvicorn thread on loopback, recording, scripted faults.

Test support only. Provider modules subclass ``FakeServer`` and supply the wire format; see fakes.py.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import parse_qsl

import genai_prices.types
import uvicorn

from sluicegate_sidecar.providers.base import Usage

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
FaultKind = Literal[
    "ok", "status", "html", "invalid_json", "hang", "reset",
    "stream_hang", "stream_truncate", "stream_reset", "stream_error", "endless",
]  # fmt: skip
ENDLESS_MAX_FRAMES = 1_000_000  # an endless stream still stops somewhere if nobody cuts it
UNSET: Any = object()  # ``Fault.raw_usage`` not given: the fake reports its usage in the usual shape
DEFAULT_TEXT = "Hello from the fake upstream. It answers every request the same way."
ENDLESS_TEXT = "And on " + "and on " * 40


@dataclass(frozen=True)
class FakeUsage:
    """Token usage a fake reports. ``input_tokens`` counts every prompt token, cached reads and cache
    writes included (as ``providers.base.Usage`` and genai-prices do); each fake maps it to its wire
    format (Anthropic reports ``input_tokens - cached_tokens - cache_write_tokens`` as ``input_tokens``).
    """

    input_tokens: int = 20
    output_tokens: int = 10
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    def as_usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.cached_tokens, self.cache_write_tokens)

    def as_genai_usage(self) -> genai_prices.types.Usage:
        return genai_prices.types.Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cached_tokens,
            cache_write_tokens=self.cache_write_tokens,
        )


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Fault:
    """What a fake does with one request. Build with the class methods."""

    kind: FaultKind = "ok"
    code: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    message: str | None = None
    seconds: float = 0.0
    after: int = 0
    text: str | None = None
    usage: FakeUsage | None = None
    raw_usage: Any = UNSET
    ignore_cap: bool = False

    @classmethod
    def ok(cls, *, text: str | None = None, usage: FakeUsage | None = None) -> Fault:
        return cls(text=text, usage=usage)

    @classmethod
    def bad_usage(cls, raw: Any, *, text: str | None = None) -> Fault:
        """A normal reply whose usage object is ``raw``, verbatim, where the provider puts its usage
        (OpenAI ``usage``, Anthropic ``usage`` in the message / message_start and message_delta,
        Gemini ``usageMetadata`` in every chunk). ``None`` sends a JSON null there."""
        return cls(text=text, raw_usage=raw)

    @classmethod
    def over_cap(cls, *, text: str | None = None, usage: FakeUsage | None = None) -> Fault:
        """A normal reply that ignores the output cap it was sent: all of ``text``, the usage it says."""
        return cls(text=text, usage=usage, ignore_cap=True)

    @classmethod
    def endless(cls) -> Fault:
        """A stream that ignores the cap and never ends: content chunks until the client goes away
        (or the fake stops). An unstreamed request gets a whole reply that ignored the cap."""
        return cls("endless", text=ENDLESS_TEXT, ignore_cap=True)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        message: str | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """An error reply: ``body`` as given, else the provider's own error format with ``message``."""
        return cls("status", code, dict(headers or {}), body, message)

    @classmethod
    def html(cls, code: int = 200) -> Fault:
        return cls("html", code)

    @classmethod
    def invalid_json(cls) -> Fault:
        return cls("invalid_json")

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """No byte for ``seconds`` (cut short when the fake stops), then a normal reply."""
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection with a TCP reset before any response byte."""
        return cls("reset")

    @classmethod
    def stream_hang(cls, after: int, seconds: float = 30.0) -> Fault:
        """Send ``after`` chunks, then nothing for ``seconds``, then end without the terminal event."""
        return cls("stream_hang", after=after, seconds=seconds)

    @classmethod
    def stream_truncate(cls, after: int) -> Fault:
        """Send ``after`` chunks, then end the response cleanly but without the terminal event."""
        return cls("stream_truncate", after=after)

    @classmethod
    def stream_reset(cls, after: int) -> Fault:
        """Send ``after`` chunks, then reset the connection."""
        return cls("stream_reset", after=after)

    @classmethod
    def stream_error(cls, after: int, message: str = "Overloaded") -> Fault:
        """Send ``after`` chunks, then the provider's in-stream error event, then end."""
        return cls("stream_error", after=after, message=message)


@dataclass(frozen=True)
class Plan:
    """A response to send: streamed plans are SSE frames, others one body chunk."""

    status: int
    content_type: str
    chunks: tuple[bytes, ...]
    streamed: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


def json_plan(status: int, payload: object, headers: Mapping[str, str] | None = None) -> Plan:
    return Plan(status, "application/json", (json.dumps(payload).encode(),), headers=headers or {})


def closed_port() -> int:
    """A loopback port with nothing listening on it (connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def split_words(text: str) -> list[str]:
    """Text as stream pieces, one per word with its leading whitespace (they join back to ``text``)."""
    return re.findall(r"\s*\S+", text) or [text]


ClientT = TypeVar("ClientT")


class FakeServer:
    """One fake provider on 127.0.0.1 in a background thread. Use it as a context manager."""

    prefix: ClassVar[str] = ""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        text: str = DEFAULT_TEXT,
        usage: FakeUsage | None = None,
        tool_input: Mapping[str, Any] | None = None,
        chunk_delay: float = 0.0,
        linger: float = 0.0,
    ) -> None:
        self._clients: list[Any] = []
        self.api_key = api_key  # when set, a request without this key gets the provider's auth error
        self.text = text
        self.usage = usage  # None: input from the body size, output = the words sent
        self.tool_input = dict(tool_input or {"location": "Paris"})
        self.chunk_delay = chunk_delay
        self.linger = linger  # seconds a streamed body stays open after its last event (keep-alive upstreams)
        self.requests: list[RecordedRequest] = []
        self.last_usage: FakeUsage | None = None
        self.endless_frames_sent = 0  # content frames the last endless stream sent before its client left
        self._scripts: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- provider hooks -------------------------------------------------------------------------

    def answer(
        self, request: RecordedRequest, text: str, usage: FakeUsage | None, fault: Fault | None = None
    ) -> tuple[Plan, FakeUsage | None]:
        """The success reply (or a routing/auth error) and the usage it reports. ``fault`` may ask
        for a raw usage object or a reply that ignores the output cap."""
        raise NotImplementedError

    def content_frame(self, plan: Plan) -> int:
        """The index of the first stream frame that carries generated text (repeated by ``endless``)."""
        raise NotImplementedError

    def error(self, status: int, message: str | None) -> Plan:
        raise NotImplementedError

    def stream_error_frame(self, message: str) -> bytes:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return self.root_url + self.prefix

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def script(self, faults: Iterable[Fault]) -> None:
        """Replace the pending scripts: request k gets ``faults[k]``, later requests a normal reply."""
        with self._lock:
            self._scripts = collections.deque(faults)

    def reply_usage(self, request: RecordedRequest, pieces: list[str], usage: FakeUsage | None) -> FakeUsage:
        """The fault's usage, else ``self.usage``, else about a token per 4 body bytes and one per piece."""
        return usage or self.usage or FakeUsage(max(1, len(request.body) // 4), len(pieces))

    def __enter__(self) -> FakeServer:
        sock = socket.socket(
            socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )  # asyncio sets TCP_NODELAY only with an explicit protocol
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, interface="asgi3", lifespan="off", loop="asyncio", ws="none", log_config=None,
            access_log=False, proxy_headers=False, server_header=False, date_header=False,
            timeout_graceful_shutdown=5,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.005)
        return self

    def keep(self, client: ClientT) -> ClientT:
        """An SDK client a test made for this fake, closed when the fake stops (never left to the GC)."""
        self._clients.append(client)
        return client

    def __exit__(self, *exc_info: object) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        assert self._server is not None and self._thread is not None
        self._stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=15)
        if self._thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} did not stop")

    # -- serving --------------------------------------------------------------------------------

    async def _app(self, scope: Message, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        request = RecordedRequest(scope["method"], scope["path"], query, headers, body)
        with self._lock:
            self.requests.append(request)
            fault = self._scripts.popleft() if self._scripts else Fault.ok()
        if fault.kind == "reset":
            return await _reset(send, receive)
        if fault.kind == "hang" and not await self._wait(fault.seconds):
            return await _reset(send, receive)
        if fault.kind == "status":
            error = self.error(fault.code, fault.message)
            body_bytes = fault.body if fault.body is not None else error.chunks[0]
            await self._send(send, Plan(fault.code, error.content_type, (body_bytes,), headers=fault.headers))
            return None
        if fault.kind == "html":
            html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
            await self._send(send, Plan(fault.code, "text/html", (html,)))
            return None
        if fault.kind == "invalid_json":
            await self._send(send, Plan(200, "application/json", (b'{"id": "x", "choices": [{"ind',)))
            return None
        text = fault.text if fault.text is not None else self.text
        if fault.raw_usage is UNSET and not fault.ignore_cap:  # a subclass may not take ``fault``
            plan, usage = self.answer(request, text, fault.usage)
        else:
            plan, usage = self.answer(request, text, fault.usage, fault)
        if fault.kind == "endless" and plan.streamed and plan.status < 300:
            return await self._send_endless(send, plan)
        if fault.kind in ("ok", "hang", "endless"):
            await self._send(send, plan, self.chunk_delay, usage if plan.status < 300 else None)
            return None
        return await self._send_broken(send, receive, plan, fault)

    async def _send_endless(self, send: Send, plan: Plan) -> None:
        """The frames up to the first content frame, then that frame again and again, never the end."""
        cycle = getattr(send, "__self__")  # noqa: B009  (uvicorn's request cycle: has it disconnected?)
        index = self.content_frame(plan)
        await send({"type": "http.response.start", "status": plan.status, "headers": _headers(plan, None)})
        for chunk in plan.chunks[:index]:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent = 0
        while not cycle.disconnected and not self._stopping.is_set() and sent < ENDLESS_MAX_FRAMES:
            await send({"type": "http.response.body", "body": plan.chunks[index], "more_body": True})
            sent += 1
            await asyncio.sleep(self.chunk_delay)
        self.endless_frames_sent = sent
        if not cycle.disconnected:
            await send({"type": "http.response.body", "body": b""})

    async def _send_broken(self, send: Send, receive: Receive, plan: Plan, fault: Fault) -> None:
        """Send the first ``fault.after`` chunks (half the body of an unstreamed reply), then fail."""
        if plan.streamed:
            chunks = plan.chunks[: fault.after]
        else:
            whole = plan.chunks[0]
            chunks = (whole[: len(whole) // 2],)
        await send({"type": "http.response.start", "status": plan.status, "headers": _headers(plan, None)})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await self._wait(self.chunk_delay)
        if fault.kind == "stream_reset":
            return await _reset(send, receive)
        if fault.kind == "stream_hang":
            await self._wait(fault.seconds)
        if fault.kind == "stream_error":
            await send({"type": "http.response.body", "body": self.stream_error_frame(fault.message or "")})
            return None
        await send({"type": "http.response.body", "body": b""})
        return None

    async def _send(self, send: Send, plan: Plan, delay: float = 0.0, usage: FakeUsage | None = None) -> None:
        """Send the plan, ``delay`` seconds between chunks; ``usage`` becomes ``last_usage`` just before
        the last chunk goes (so a client that has the whole reply sees it). Stopping cuts it short."""
        length = None if plan.streamed else sum(len(c) for c in plan.chunks)
        await send({"type": "http.response.start", "status": plan.status, "headers": _headers(plan, length)})
        for i, chunk in enumerate(plan.chunks):
            if i and delay and not await self._wait(delay):
                break
            if i == len(plan.chunks) - 1 and usage is not None:
                self.last_usage = usage
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if plan.streamed and self.linger:
            await self._wait(self.linger)
        await send({"type": "http.response.body", "body": b""})

    async def _wait(self, seconds: float) -> bool:
        """Sleep, cut short when the fake stops; False if it was."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.is_set():
                return False
            await asyncio.sleep(min(left, 0.05))
        return not self._stopping.is_set()


def _headers(plan: Plan, length: int | None) -> list[tuple[bytes, bytes]]:
    headers = {"content-type": plan.content_type} | dict(plan.headers)
    if length is not None:
        headers["content-length"] = str(length)
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _reset(send: Send, receive: Receive) -> None:
    """Abort the connection with a TCP RST. uvicorn's ``send`` is a bound method of the request cycle,
    which holds the asyncio transport (ASGI offers no other way to reach the socket)."""
    transport: asyncio.Transport = getattr(send, "__self__").transport  # noqa: B009
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await receive()  # returns http.disconnect once uvicorn has seen the connection go
