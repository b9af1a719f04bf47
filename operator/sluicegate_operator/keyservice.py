"""The data-key endpoint (HTTPS, aiohttp): a sidecar's projected ServiceAccount token → its namespace's keys.

Every request is checked with a TokenReview for the ``sluicegate`` audience; a token only ever opens the
keys of its own namespace. Keys are never logged; responses are never cached.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp.web
from kubernetes_asyncio.client.exceptions import ApiException

from sluicegate_contract.keyreply import KEYS_PATH, encode_keys_reply
from sluicegate_contract.sidecarpod import TOKEN_AUDIENCE

from .keystore import Keystore
from .kube import Kube

AUDIENCE = TOKEN_AUDIENCE
_MAX_TOKEN = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store"}

logger = logging.getLogger(__name__)


def _refuse(status: int, message: str) -> aiohttp.web.Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="{AUDIENCE}"'
    return aiohttp.web.json_response({"error": message}, status=status, headers=headers)


class KeyService:
    """Handlers of the key endpoint; built at startup with the operator's client and keystore."""

    def __init__(self, kube: Kube, keystore: Keystore, *, audience: str = AUDIENCE) -> None:
        self._kube = kube
        self._keystore = keystore
        self._audience = audience

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application(client_max_size=64 * 1024)
        app.add_routes([aiohttp.web.post(KEYS_PATH, self.keys), aiohttp.web.get("/healthz", self.healthz)])
        return app

    async def healthz(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"ok": True})

    async def keys(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
            return _refuse(401, "send the projected ServiceAccount token as 'Authorization: Bearer <token>'")
        try:
            identity = await self._kube.review_token(token, [self._audience])
        except (ApiException, aiohttp.ClientError) as exc:
            logger.warning("TokenReview failed: %s", getattr(exc, "status", type(exc).__name__))
            return _refuse(503, "cannot review the token right now; retry")
        if not identity.authenticated:
            return _refuse(401, "the token is invalid or expired")
        if self._audience not in identity.audiences:
            return _refuse(401, f"the token is not for audience {self._audience!r}")
        account = identity.service_account
        if account is None:
            return _refuse(403, "only ServiceAccount tokens can read data keys")
        namespace = account[0]
        ring = await self._keystore.data_ring(namespace, create=False)
        if ring is None:
            return _refuse(404, f"namespace {namespace!r} has no data keys yet (no sealed config)")
        logger.info("served data keys of %s to %s", namespace, identity.username)
        body = encode_keys_reply(namespace, ring.active.kid, ring.keys)
        return aiohttp.web.Response(body=body, content_type="application/json", headers=_NO_STORE)


def server_tls(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


@contextlib.asynccontextmanager
async def serving(
    app: aiohttp.web.Application, *, host: str, port: int, tls: ssl.SSLContext | None
) -> AsyncIterator[int]:
    """Serve ``app`` for the duration of the block; yields the bound port (``port=0`` picks a free one)."""
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = aiohttp.web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        addresses = runner.addresses
        yield int(addresses[0][1]) if addresses else port
    finally:
        await runner.cleanup()
