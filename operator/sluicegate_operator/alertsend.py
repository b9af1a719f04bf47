"""POST a budget alert to a webhook the allow-list admits (``alerttargets``).

The host is resolved once, every address it resolves to is checked, and the connection goes to a
checked address (a pinned resolver), so a DNS answer that changes between the check and the connect
(rebinding) cannot reach the cluster. TLS still verifies the certificate against the host name.
Redirects are never followed; no proxy from the environment is used.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .alerttargets import Refused, Target, WebhookPolicy, check_addresses, check_url

Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _PinnedResolver(AbstractResolver):
    """Answers only for the checked host, only with the checked addresses."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        self._host, self._addresses = host, tuple(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower().rstrip(".") != self._host:
            raise OSError(f"{host!r} was not checked")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._addresses
        ]

    async def close(self) -> None:
        return None


async def vet(url: str, policy: WebhookPolicy, resolve: Resolve) -> tuple[Target, tuple[str, ...]]:
    """The target and the addresses to connect to; raises ``Refused`` (policy) or ``OSError`` (lookup)."""
    target = check_url(url, policy)
    if target.literal is not None:
        return target, (str(target.literal),)
    addresses = await resolve(target.host, target.port)
    return target, check_addresses(target, addresses, policy)


async def post_alert(
    url: str,
    payload: Any,
    policy: WebhookPolicy,
    *,
    timeout_seconds: float,
    resolve: Resolve = system_resolve,
    ssl_context: ssl.SSLContext | None = None,
) -> str:
    """'' when delivered, else what went wrong (never the URL: it is a secret).

    A refusal by the allow-list starts with ``refused:``.
    """
    try:
        target, addresses = await vet(url, policy, resolve)
    except Refused as exc:
        return f"refused: {exc}"
    except OSError:
        return "the host does not resolve"
    connector = aiohttp.TCPConnector(
        resolver=_PinnedResolver(target.host, addresses),
        use_dns_cache=False,
        ssl=ssl_context if ssl_context is not None else True,
    )
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_seconds), trust_env=False
            ) as session,
            session.post(url, json=payload, allow_redirects=False) as response,
        ):
            if 300 <= response.status < 400:
                return f"HTTP {response.status}: redirects are not followed"
            return "" if 200 <= response.status < 300 else f"HTTP {response.status}"
    except TimeoutError:
        return "timed out"
    except aiohttp.ClientError as exc:
        return type(exc).__name__
