"""Delivering an alert to an allow-listed webhook (issue 13), against servers on loopback only: the
name is resolved once and the connection goes to the checked address with TLS verified against the
name; a redirect is never followed."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import aiohttp.web
import trustme

from sluicegate_operator.alertsend import post_alert
from sluicegate_operator.alerttargets import WebhookPolicy

HOOK_NAME = "hooks.sluicegate-test.example"  # not in any DNS: reachable only through the checked address


class Hook:
    def __init__(self) -> None:
        self.received: list[object] = []
        self.followed: list[str] = []

    async def hook(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.received.append(await request.json())
        return aiohttp.web.Response(text="ok")

    async def moved(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        raise aiohttp.web.HTTPFound("/elsewhere")

    async def elsewhere(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.followed.append(request.method)
        return aiohttp.web.Response(text="followed")


@contextlib.asynccontextmanager
async def serving(hook: Hook, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook.hook)
    app.router.add_post("/moved", hook.moved)
    app.router.add_route("*", "/elsewhere", hook.elsewhere)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_an_allow_listed_https_hook_gets_the_alert_over_the_checked_address_with_tls_verified() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOOK_NAME).configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    hook = Hook()
    async with serving(hook, server_tls) as port:
        problem = await post_alert(
            f"https://{HOOK_NAME}:{port}/hook",
            {"text": "50% of the monthly limit"},
            WebhookPolicy.build([HOOK_NAME]),
            timeout_seconds=5,
            resolve=resolve,
            ssl_context=client_tls,
        )
    assert problem == ""
    assert hook.received == [{"text": "50% of the monthly limit"}]
    assert lookups == [HOOK_NAME]  # one lookup, checked; the connection used its answer


async def test_the_same_hook_without_the_allow_list_is_refused_and_gets_nothing() -> None:
    hook = Hook()
    async with serving(hook) as port:
        problem = await post_alert(
            f"http://127.0.0.1:{port}/hook", {"text": "x"}, WebhookPolicy.build(), timeout_seconds=5
        )
    assert problem.startswith("refused: 127.0.0.1 is a loopback address")
    assert hook.received == []


async def test_a_redirect_from_a_webhook_is_never_followed() -> None:
    hook = Hook()
    async with serving(hook) as port:
        problem = await post_alert(
            f"http://127.0.0.1:{port}/moved",
            {"text": "x"},
            WebhookPolicy.build(["127.0.0.1/32"]),
            timeout_seconds=5,
        )
    assert problem == "HTTP 302: redirects are not followed"
    assert hook.followed == []


async def test_a_certificate_for_another_name_fails_even_at_the_checked_address() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("someone-else.example").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    hook = Hook()
    async with serving(hook, server_tls) as port:
        problem = await post_alert(
            f"https://{HOOK_NAME}:{port}/hook",
            {"text": "x"},
            WebhookPolicy.build([HOOK_NAME]),
            timeout_seconds=5,
            resolve=resolve,
            ssl_context=client_tls,
        )
    assert problem.startswith("ClientConnector") and hook.received == []
