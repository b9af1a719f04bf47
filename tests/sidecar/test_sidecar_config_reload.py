"""Config reloads (fault 13): a tampered, foreign or rolled-back config is refused and
counted while the last good one keeps serving; a good one with a higher serial is picked up."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sluicegate_contract.configdir import KEYS_DIR, read_sealed, write_sealed
from tests.sidecar.conftest import OPENAI_KEY
from tests.support.sidecar_harness import (
    SidecarThread,
    connection,
    metric_value,
    render_dir,
    tier,
    wait_until,
)


def resources(openai_up: Any, *, with_later: bool = False) -> list[Any]:
    objects: list[Any] = [
        connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
        tier("standard", 10, [("openai", "gpt-4o-mini")]),
    ]
    if with_later:
        objects.append(tier("later", 20, [("openai", "gpt-4o-mini")]))
    return objects


def chat(sidecar: SidecarThread, model: str = "tier:standard") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def sealed_elsewhere(
    config_dir: Path, scratch: Path, objects: list[Any], serial: int, *, same_keys: bool
) -> tuple[bytes, bytes]:
    """A config rendered out of the sidecar's sight (with the same dev keys, or fresh ones)."""
    if same_keys:
        shutil.copytree(config_dir / KEYS_DIR, scratch / KEYS_DIR)
    render_dir(scratch, objects, serial=serial)
    return read_sealed(scratch)


def flip_a_value_byte(body: bytes, sig: bytes) -> tuple[bytes, bytes]:
    return body.replace(b'"serial":2', b'"serial":3', 1), sig  # still valid, canonical JSON


def truncate(body: bytes, sig: bytes) -> tuple[bytes, bytes]:
    return body[: len(body) // 2], sig


def sign_with_another_key(body: bytes, sig: bytes) -> tuple[bytes, bytes]:
    return body, base64.b64encode(Ed25519PrivateKey.generate().sign(body))  # under the trusted key id


Tamper = Callable[[bytes, bytes], tuple[bytes, bytes]]


@pytest.mark.parametrize(
    ("tamper", "same_keys", "reason"),
    [
        (flip_a_value_byte, True, "bad_signature"),
        (truncate, True, "corrupt"),
        (sign_with_another_key, True, "bad_signature"),
        (None, False, "unknown_signing_key"),  # rendered by someone else's operator keys
    ],
    ids=["flipped-byte", "truncated", "forged-signature", "foreign-signing-key"],
)
def test_a_refused_config_is_counted_and_the_last_good_one_keeps_serving(
    tmp_path: Path, openai_up, tamper: Tamper | None, same_keys: bool, reason: str
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    with SidecarThread(config_dir, tmp_path / "ledger") as sc:
        assert chat(sc).status_code == 200
        body, sig = sealed_elsewhere(
            config_dir, tmp_path / "scratch", resources(openai_up, with_later=True), 2, same_keys=same_keys
        )
        if tamper is not None:
            body, sig = tamper(body, sig)
        write_sealed(config_dir, body, sig)

        wait_until(lambda: metric_value(sc, "sluicegate_config_rejected_total", reason=reason) == 1)
        assert metric_value(sc, "sluicegate_config_rejected_total") == 1
        assert metric_value(sc, "sluicegate_config_serial") == 1
        assert chat(sc).status_code == 200
        assert chat(sc, "tier:later").status_code == 404  # nothing of the refused config applies
        ready = httpx.get(f"{sc.ops_url}/readyz").json()
        assert ready["ready"] is True and ready["configSerial"] == 1 and reason in ready["lastRejection"]

        render_dir(config_dir, resources(openai_up, with_later=True), serial=7)
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 7)
        assert chat(sc, "tier:later").status_code == 200
        assert httpx.get(f"{sc.ops_url}/readyz").json()["lastRejection"] is None
        assert metric_value(sc, "sluicegate_config_rejected_total") == 1


def test_an_older_signed_config_is_not_rolled_back_to(tmp_path: Path, openai_up) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up, with_later=True))
    old_body, old_sig = read_sealed(config_dir)
    with SidecarThread(config_dir, tmp_path / "ledger") as sc:
        render_dir(config_dir, resources(openai_up))  # serial 2 drops the tier "later"
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 2)
        assert chat(sc, "tier:later").status_code == 404
        write_sealed(config_dir, old_body, old_sig)  # a replay of serial 1, validly signed
        assert msgspec.json.decode(old_body)["serial"] == 1

        async def load_now() -> bool:
            assert sc.gateway is not None
            return sc.gateway.try_load()

        assert sc.run_sync(load_now()) is False  # a reload attempt on the sidecar's loop, refused
        assert chat(sc, "tier:later").status_code == 404
        assert metric_value(sc, "sluicegate_config_serial") == 2
        # the replay is counted once, however many polls see it (fault 13)
        wait_until(lambda: metric_value(sc, "sluicegate_config_rejected_total", reason="rollback") == 1)
        assert sc.run_sync(load_now()) is False
        assert metric_value(sc, "sluicegate_config_rejected_total", reason="rollback") == 1
