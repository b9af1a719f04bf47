"""Key material as bytes, without ``cryptography``: the errors of a bad config or key ring, data key
rings, and trusted public signing keys as their 32 raw bytes.

Pure. The serving sidecar imports this and never ``sealing``/``keyring`` (which load ``cryptography``,
9 MiB of resident memory): signatures are checked and provider keys opened by its verifier child.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

ED25519_PUBLIC_KEY_BYTES = 32
DATA_KEY_BYTES = 32


class ConfigRejected(Exception):
    """A config that must not be used. ``reason`` is a short stable code for metrics and status."""

    def __init__(self, reason: str, detail: str, serial: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.serial = serial  # the refused config's serial, when it could be read


class KeyUnsealError(Exception):
    """A provider key that cannot be decrypted; that provider is unusable, the rest of the config is fine."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class KeyringError(Exception):
    """A key ring document that cannot be used."""


@dataclass(frozen=True, slots=True)
class DataKey:
    kid: str
    key: bytes


@dataclass(frozen=True, slots=True)
class DataRing:
    active: DataKey
    keys: Mapping[str, bytes]


class _Ring(msgspec.Struct, forbid_unknown_fields=True):
    active: str
    keys: dict[str, str]


def decode_ring(data: bytes, what: str) -> _Ring:
    try:
        ring = msgspec.json.decode(data, type=_Ring)
    except msgspec.DecodeError as exc:
        raise KeyringError(f"{what} is not a valid key ring: {exc}") from None
    if ring.active not in ring.keys:
        raise KeyringError(f"{what}: active key {ring.active!r} is not in the ring")
    return ring


def raw_key(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise KeyringError(f"{what} holds a key that is not base64") from None


def decode_data_ring(data: bytes) -> DataRing:
    ring = decode_ring(data, "data key ring")
    keys = {kid: raw_key(text, "data key ring") for kid, text in ring.keys.items()}
    for kid, key in keys.items():
        if len(key) != DATA_KEY_BYTES:
            raise KeyringError(f"data key {kid!r} is not 256 bits")
    return DataRing(active=DataKey(kid=ring.active, key=keys[ring.active]), keys=keys)


def decode_public_key_bytes(data: bytes) -> dict[str, bytes]:
    """Trusted public signing keys ``{kid: base64}`` as raw Ed25519 keys (32 bytes each)."""
    try:
        raw = msgspec.json.decode(data, type=dict[str, str])
    except msgspec.DecodeError as exc:
        raise KeyringError(f"public signing keys are not valid JSON: {exc}") from None
    out: dict[str, bytes] = {}
    for kid, text in raw.items():
        key = raw_key(text, "public signing keys")
        if len(key) != ED25519_PUBLIC_KEY_BYTES:
            raise KeyringError(f"public signing key {kid!r} is not an Ed25519 key")
        out[kid] = key
    return out
