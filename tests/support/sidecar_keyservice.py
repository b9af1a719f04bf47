"""A fake of the operator's key service for sidecar tests: HTTPS on loopback, ``POST /v1/keys`` with a
bearer token in, the namespace's data-key ring out. Test support only.

    ca = trustme.CA()
    service = await FakeKeyService(server_context(ca)).start()      # on the running loop, or:
    with KeyServiceThread(FakeKeyService(server_context(ca))) as service: ...   # its own thread
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from dataclasses import dataclass, field

import trustme
from aiohttp import web

from tests.support.sidecar_harness import free_port


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server TLS context with a certificate for 127.0.0.1 issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@dataclass
class FakeKeyService:
    """Answers as the operator's key service does: 200 {"namespace", "active", "keys": {kid: base64}}
    for a token in ``tokens``, 401 otherwise. Change the attributes while it runs."""

    ssl_context: ssl.SSLContext
    port: int = field(default_factory=free_port)
    tokens: set[str] = field(default_factory=lambda: {"token-1"})
    namespace: str = "default"
    active: str = ""
    keys: dict[str, bytes] = field(default_factory=dict)
    raw_reply: bytes | None = None  # sent verbatim (200) instead of the ring when set
    seen: list[str] = field(default_factory=list)  # the Authorization header of every request
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _keys(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        self.seen.append(header)
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return web.json_response({"error": "invalid token"}, status=401)
        if self.raw_reply is not None:
            return web.Response(body=self.raw_reply, content_type="application/json")
        ring = {kid: base64.b64encode(key).decode() for kid, key in self.keys.items()}
        active = self.active or next(iter(self.keys), "")
        return web.json_response({"namespace": self.namespace, "active": active, "keys": ring})

    async def start(self) -> FakeKeyService:
        app = web.Application()
        app.router.add_post("/v1/keys", self._keys)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class KeyServiceThread:
    """Run a ``FakeKeyService`` on its own event loop in a background thread."""

    def __init__(self, service: FakeKeyService) -> None:
        self.service = service
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeKeyService:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(), self._loop).result(timeout=10)
        return self.service

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.service.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
