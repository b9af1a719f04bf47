"""A budget authority's sync endpoint on loopback for the sidecar's authority-client tests: a real
HTTP server (aiohttp) whose answers a test writes, and can change mid-test (the authority gone,
slow, or back)."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp.web
import msgspec

from sluicegate_contract.authority import SYNC_PATH, AccountView, LeaseGrant, SyncReply, SyncRequest


@dataclass(frozen=True)
class Sent:
    """A sync as the authority received it."""

    content: bytes
    headers: Mapping[str, str]


Reply = tuple[int, bytes]  # status, body
Answer = Callable[[Sent], Reply | Awaitable[Reply]]
CAP = 1_000_000


class FakeAuthority:
    """Grants what is asked, within the cap; counts syncs."""

    def __init__(self) -> None:
        self.syncs = 0
        self.leased = 0

    def handle(self, sent: Sent) -> Reply:
        self.syncs += 1
        sync = msgspec.json.decode(sent.content, type=SyncRequest)
        grants = []
        for ask in sync.asks:
            more = min(ask.want_micro_usd, CAP - self.leased)
            self.leased += more
            account = AccountView(
                cap_micro_usd=CAP, settled_micro_usd=0, leased_micro_usd=self.leased, holders=1
            )
            grants.append(
                LeaseGrant(
                    scope=ask.scope,
                    lease_id="l1",
                    state="closed" if ask.final else "open",
                    amount_micro_usd=self.leased,
                    settled_micro_usd=ask.settled_micro_usd,
                    ttl_ms=10_000,
                    window_start="",
                    window_end="",
                    account=account,
                )  # fmt: skip
            )
        return 200, msgspec.json.encode(SyncReply(leases=tuple(grants)))


class Refused(Exception):
    """Raised by an answer: the connection is dropped unanswered, as when the authority is gone."""


def refuse(sent: Sent) -> Reply:
    raise Refused


class LoopbackAuthority:
    """Answers each sync with ``answer`` (set it to change the authority's behaviour mid-test)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.url = ""

    async def _sync(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        sent = Sent(await request.read(), request.headers)
        try:
            found = self.answer(sent)
            status, body = await found if inspect.isawaitable(found) else found
        except Refused:
            assert request.transport is not None
            request.transport.abort()  # nothing is answered: the client sees the connection drop
            return aiohttp.web.Response(status=503)  # never sent
        return aiohttp.web.Response(status=status, body=body, content_type="application/json")


@asynccontextmanager
async def serving(answer: Answer, tls: ssl.SSLContext | None = None) -> AsyncIterator[LoopbackAuthority]:
    authority = LoopbackAuthority(answer)
    app = aiohttp.web.Application()
    app.router.add_post(SYNC_PATH, authority._sync)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    authority.url = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield authority
    finally:
        await runner.cleanup()
