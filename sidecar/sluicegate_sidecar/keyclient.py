"""Fetches this namespace's data keys from the operator's key service; keeps them in memory only.

Authenticates with the projected ServiceAccount token (audience ``sluicegate``), re-read on every
fetch since the kubelet rotates it. Retries with capped exponential back-off.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from pathlib import Path

import httpx

from sluicegate_contract.keyreply import KEYS_PATH, KeysReplyError, decode_keys_reply

log = logging.getLogger("sluicegate.sidecar")


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
        verify: ssl.SSLContext | bool = True
        if self.ca_file or self.ca_pem:
            verify = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_pem)
        async with httpx.AsyncClient(verify=verify, timeout=10.0) as client:
            response = await client.post(self.url, headers={"authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise KeyServiceError(f"key service answered {response.status_code}")
        try:
            reply, keys = decode_keys_reply(response.content)
        except KeysReplyError as exc:
            raise KeyServiceError(str(exc)) from None
        self.keys, self.namespace = keys, reply.namespace
        return keys

    async def refresh(self) -> bool:
        """One fetch (an unknown key id showed up); False when it failed, keeping the keys we have."""
        try:
            await self.fetch()
        except (KeyServiceError, httpx.HTTPError, OSError) as exc:
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
            except (KeyServiceError, httpx.HTTPError, OSError) as exc:
                log.warning("data keys not fetched (attempt %s): %s", attempt, exc)
            if attempt < attempts:  # no sleep after the last: the caller goes on without keys
                await asyncio.sleep(delay * (0.5 + rng.random() / 2))
                delay = min(delay * 2, 30.0)
        return False
