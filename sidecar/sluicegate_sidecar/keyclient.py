"""Fetches this namespace's data keys from the operator's key service; keeps them in memory only.

Authenticates with the projected ServiceAccount token (audience ``sluicegate``), re-read on every
fetch since the kubelet rotates it. Retries with capped exponential back-off. Over aiohttp, which
the sidecar serves with anyway: httpx would be loaded only for this one request a start.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from pathlib import Path

import aiohttp

from sluicegate_contract.keyreply import KEYS_PATH, KeysReplyError, decode_keys_reply

log = logging.getLogger("sluicegate.sidecar")
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10.0, sock_connect=10.0, sock_read=10.0)


class KeyServiceError(Exception):
    pass


class KeyClient:
    def __init__(
        self, url: str, token_file: Path, ca_file: str | None = None, ca_pem: str | None = None
    ) -> None:
        self.url = url.rstrip("/") + KEYS_PATH
        self.token_file = token_file
        self.ca_file = ca_file
        self.ca_pem = ca_pem
        self.keys: dict[str, bytes] = {}
        self.namespace: str | None = None

    async def fetch(self) -> dict[str, bytes]:
        token = self.token_file.read_text(encoding="utf-8").strip()
        # The given CA, else the system trust store; never unverified.
        verify = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_pem)
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT, cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.post(
                self.url, headers={"authorization": f"Bearer {token}"}, ssl=verify, allow_redirects=False
            ) as response,
        ):
            status, content = response.status, await response.read()
        if status != 200:
            raise KeyServiceError(f"key service answered {status}")
        try:
            reply, keys = decode_keys_reply(content)
        except KeysReplyError as exc:
            raise KeyServiceError(str(exc)) from None
        self.keys, self.namespace = keys, reply.namespace
        return keys

    async def refresh(self) -> bool:
        """One fetch (an unknown key id showed up); False when it failed, keeping the keys we have."""
        try:
            await self.fetch()
        except (KeyServiceError, aiohttp.ClientError, OSError) as exc:
            log.warning("data keys not refreshed: %s", exc)
            return False
        return True

    async def fetch_with_backoff(self, attempts: int = 8, rng: random.Random | None = None) -> bool:
        rng = rng or random.Random()
        delay = 0.5
        for attempt in range(1, attempts + 1):
            try:
                await self.fetch()
                return True
            except (KeyServiceError, aiohttp.ClientError, OSError) as exc:
                log.warning("data keys not fetched (attempt %s): %s", attempt, exc)
            if attempt < attempts:  # no sleep after the last: the caller goes on without keys
                await asyncio.sleep(delay * (0.5 + rng.random() / 2))
                delay = min(delay * 2, 30.0)
        return False
