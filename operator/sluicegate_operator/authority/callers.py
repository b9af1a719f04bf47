"""Who may touch which accounts in a cluster: a sidecar's projected ServiceAccount token, checked with a
TokenReview for the ``sluicegate`` audience (as the key service does), opens its own namespace only.

Sidecars sync every second, so a token that passed is remembered (by its SHA-256, never the token) for
``remember_seconds``; a rejected one is reviewed again next time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from ..kube import TokenIdentity

AUDIENCE = "sluicegate"
_MAX_TOKEN = 16 * 1024
_MAX_REMEMBERED = 10_000

log = logging.getLogger("sluicegate.authority")
Review = Callable[[str, list[str]], Awaitable[TokenIdentity]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``namespace`` when the caller may act there; else the HTTP status and why."""

    namespace: str | None
    status: int = 200
    message: str = ""


class TokenCallers:
    def __init__(
        self,
        review: Review,
        *,
        audience: str = AUDIENCE,
        remember_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review, self._audience = review, audience
        self._remember, self._monotonic = remember_seconds, monotonic
        self._known: dict[bytes, tuple[str, float]] = {}

    async def check(self, authorization: str) -> Verdict:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
            return Verdict(
                None, 401, "send the projected ServiceAccount token as 'Authorization: Bearer <token>'"
            )
        digest = hashlib.sha256(token.encode()).digest()
        now = self._monotonic()
        known = self._known.get(digest)
        if known is not None and known[1] > now:
            return Verdict(known[0])
        try:
            identity = await self._review(token, [self._audience])
        except (ApiException, aiohttp.ClientError) as exc:
            log.warning("TokenReview failed: %s", getattr(exc, "status", type(exc).__name__))
            return Verdict(None, 503, "cannot review the token right now; retry")
        if not identity.authenticated or self._audience not in identity.audiences:
            return Verdict(None, 401, f"the token is invalid, expired or not for audience {self._audience!r}")
        account = identity.service_account
        if account is None:
            return Verdict(None, 403, "only ServiceAccount tokens can hold budget leases")
        if len(self._known) >= _MAX_REMEMBERED:
            self._known = {k: v for k, v in self._known.items() if v[1] > now}
            if len(self._known) >= _MAX_REMEMBERED:
                self._known.clear()
        self._known[digest] = (account[0], now + self._remember)
        return Verdict(account[0])
