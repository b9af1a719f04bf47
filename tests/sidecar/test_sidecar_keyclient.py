"""The sidecar's key-service client (fault 15) against a key service on loopback over HTTPS that
answers ``POST /v1/keys`` as the operator's does: the CA is trusted as given (file or PEM, TLS is
never skipped), the token file is read again on every fetch, a refusal keeps the keys already
held, and start-up retries with back-off until the service answers."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from sluicegate_sidecar.keyclient import KeyClient, KeyServiceError
from tests.support.sidecar_keyservice import FakeKeyService, server_context

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def service(ca: trustme.CA) -> AsyncIterator[FakeKeyService]:
    running = FakeKeyService(server_context(ca), namespace="checkout", keys={"dk-a": KEY_A})
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("token-1\n")  # the kubelet's projected token; a trailing newline is not part of it
    return path


def client_for(service: FakeKeyService, token_file: Path, ca: trustme.CA) -> KeyClient:
    return KeyClient(service.url, token_file, ca_pem=ca.cert_pem.bytes().decode())


async def test_keys_are_fetched_over_https_trusting_the_given_ca_pem(
    service: FakeKeyService, token_file: Path, ca: trustme.CA
) -> None:
    client = client_for(service, token_file, ca)
    assert await client.fetch() == {"dk-a": KEY_A}
    assert client.keys == {"dk-a": KEY_A} and client.namespace == "checkout"
    assert service.seen == ["Bearer token-1"]


async def test_a_ca_bundle_file_is_trusted_as_well(
    service: FakeKeyService, token_file: Path, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(bundle))
    client = KeyClient(service.url + "/", token_file, ca_file=str(bundle))
    assert await client.fetch() == {"dk-a": KEY_A}


async def test_a_server_the_given_ca_did_not_sign_is_refused_and_no_keys_are_taken(
    service: FakeKeyService, token_file: Path
) -> None:
    stranger = KeyClient(service.url, token_file, ca_pem=trustme.CA().cert_pem.bytes().decode())
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await stranger.fetch()
    assert await stranger.refresh() is False and stranger.keys == {}
    system_trust = KeyClient(service.url, token_file)  # no CA given: the system roots, never "no check"
    assert await system_trust.refresh() is False and system_trust.keys == {}
    assert service.seen == []  # no request was ever sent over an unverified connection


async def test_the_token_is_read_again_from_its_file_on_every_fetch(
    service: FakeKeyService, token_file: Path, ca: trustme.CA
) -> None:
    client = client_for(service, token_file, ca)
    await client.fetch()
    service.tokens.add("token-2")
    token_file.write_text("token-2")  # the kubelet rotated the projected token
    await client.fetch()
    assert service.seen == ["Bearer token-1", "Bearer token-2"]


async def test_a_401_raises_and_a_refresh_that_fails_keeps_the_keys_already_held(
    service: FakeKeyService, token_file: Path, ca: trustme.CA
) -> None:
    client = client_for(service, token_file, ca)
    await client.fetch()
    service.tokens = {"token-2"}  # the token in the file is no longer accepted
    service.keys = {"dk-a": KEY_A, "dk-b": KEY_B}
    with pytest.raises(KeyServiceError, match="401"):
        await client.fetch()
    assert await client.refresh() is False
    assert client.keys == {"dk-a": KEY_A}

    token_file.unlink()  # no token at all (volume not mounted yet): a failed refresh, not a crash
    assert await client.refresh() is False
    assert client.keys == {"dk-a": KEY_A}

    token_file.write_text("token-2")
    assert await client.refresh() is True
    assert client.keys == {"dk-a": KEY_A, "dk-b": KEY_B}


@pytest.mark.parametrize(
    "reply",
    [b"<html>maintenance</html>", b'{"namespace": "checkout", "active": "dk-a", "keys": {"dk-a": "%%%"}}'],
    ids=["not-json", "not-base64"],
)
async def test_an_unreadable_reply_is_an_error_and_keeps_the_keys_already_held(
    service: FakeKeyService, token_file: Path, ca: trustme.CA, reply: bytes
) -> None:
    client = client_for(service, token_file, ca)
    await client.fetch()
    service.raw_reply = reply
    with pytest.raises(KeyServiceError, match="unreadable"):
        await client.fetch()
    assert await client.refresh() is False
    assert client.keys == {"dk-a": KEY_A}


async def test_start_up_retries_with_back_off_until_the_key_service_comes_up(
    ca: trustme.CA, token_file: Path
) -> None:
    late = FakeKeyService(
        server_context(ca), keys={"dk-a": KEY_A}
    )  # its port is chosen, nothing listens on it yet
    client = client_for(late, token_file, ca)
    started = time.monotonic()

    async def come_up_later() -> None:
        await asyncio.sleep(0.6)
        await late.start()

    starter = asyncio.ensure_future(come_up_later())
    try:
        assert await client.fetch_with_backoff(attempts=6, rng=random.Random(7)) is True
    finally:
        await starter
        await late.stop()
    assert time.monotonic() - started >= 0.6
    assert client.keys == {"dk-a": KEY_A}
    assert late.seen == ["Bearer token-1"]  # refused connections until then; one request once it was up


async def test_start_up_gives_up_after_its_attempts_without_sleeping_past_the_last(
    ca: trustme.CA, token_file: Path
) -> None:
    nobody = FakeKeyService(server_context(ca))
    client = client_for(nobody, token_file, ca)
    started = time.monotonic()
    assert await client.fetch_with_backoff(attempts=1, rng=random.Random(7)) is False
    assert time.monotonic() - started < 0.2  # one refused connection, no back-off sleep after it
    assert client.keys == {}
