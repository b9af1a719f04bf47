"""fault 15, data-key rotation seen from the sidecar: a config sealed under a data key the sidecar
lacks leaves that connection unusable (the rest of the config applies); the key service is asked
again with back-off, not on every poll, and once it hands out the new key the connection is usable,
without a restart. The real ``KeyClient`` talks HTTPS to a fake key service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from sluicegate_contract.configdir import DATA_RING_FILE, KEYS_DIR, write_private
from sluicegate_contract.keyring import decode_data_ring, encode_data_ring, rotate_data_ring
from sluicegate_sidecar.keyclient import KeyClient
from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, connection, render_dir, tier, wait_until
from tests.support.sidecar_keyservice import FakeKeyService, KeyServiceThread, server_context


def resources(openai_up: FakeOpenAI) -> list[Any]:
    return [
        connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
        tier("standard", 10, [("openai", "gpt-4o-mini")]),
    ]


def chat(sidecar: SidecarThread, model: str = "tier:standard") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def readiness(sidecar: SidecarThread) -> dict[str, Any]:
    detail: dict[str, Any] = httpx.get(f"{sidecar.ops_url}/readyz", timeout=5).json()
    return detail


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def key_service(ca: trustme.CA) -> Iterator[FakeKeyService]:
    with KeyServiceThread(FakeKeyService(server_context(ca))) as service:
        yield service


def test_a_connection_sealed_under_an_unknown_data_key_becomes_usable_once_the_key_service_has_it(
    tmp_path: Path, openai_up: FakeOpenAI, key_service: FakeKeyService, ca: trustme.CA
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    ring_path = config_dir / KEYS_DIR / DATA_RING_FILE
    ring = decode_data_ring(ring_path.read_bytes())
    key_service.keys = dict(ring.keys)
    token = tmp_path / "token"
    token.write_text("token-1")
    client = KeyClient(key_service.url, token, ca_pem=ca.cert_pem.bytes().decode())
    asyncio.run(client.fetch())  # start-up: the namespace's keys as they are now
    key_service.seen.clear()

    with SidecarThread(
        config_dir, tmp_path / "ledger", data_keys=lambda: client.keys, refresh_keys=client.refresh
    ) as sc:
        assert chat(sc).status_code == 200
        time.sleep(0.2)
        assert key_service.seen == []  # every key id known: the key service is left alone

        # The operator rotates the data key and reseals; the key service cannot be reached for now.
        key_service.tokens = set()
        rotated = rotate_data_ring(ring)
        write_private(ring_path, encode_data_ring(rotated))
        render_dir(config_dir, resources(openai_up))
        wait_until(lambda: readiness(sc)["configSerial"] == 2)
        detail = readiness(sc)
        assert detail["ready"] is True  # the config itself is good; one connection cannot be used
        assert detail["unusableConnections"] == {"openai": "unknown_data_key"}
        refused = chat(sc)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "no_healthy_upstream"
        assert len(openai_up.requests) == 1

        wait_until(lambda: key_service.seen)
        time.sleep(0.5)  # ten polls of the config directory
        assert len(key_service.seen) == 1  # asked once, then back-off (1 s, doubling), not every poll

        key_service.tokens = {"token-1"}
        key_service.keys = dict(rotated.keys)  # the key service now hands out the new key too
        wait_until(lambda: readiness(sc)["unusableConnections"] == {}, timeout=5)
        assert client.keys.keys() == rotated.keys.keys()
        served = chat(sc)
        assert served.status_code == 200, served.text
        assert openai_up.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"
        asked = len(key_service.seen)
        time.sleep(0.3)
        assert len(key_service.seen) == asked  # nothing unknown any more: no further fetches
