"""Key rings as JSON documents: signing keys, per-namespace data keys, published public keys.

Pure encode/decode of bytes; where they are stored (Secrets, files) is the caller's business.
A ring holds an ``active`` key id (used for new seals) and older keys still accepted during rotation.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from .sealing import (
    DataKey,
    SigningKey,
    canonical,
    generate_data_key,
    generate_signing_key,
    load_public_key,
    public_bytes,
)


class KeyringError(Exception):
    """A key ring document that cannot be used."""


class _Ring(msgspec.Struct, forbid_unknown_fields=True):
    active: str
    keys: dict[str, str]


@dataclass(frozen=True, slots=True)
class SigningRing:
    active: SigningKey
    keys: Mapping[str, SigningKey]

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {kid: key.public() for kid, key in self.keys.items()}


@dataclass(frozen=True, slots=True)
class DataRing:
    active: DataKey
    keys: Mapping[str, bytes]


def _decode_ring(data: bytes, what: str) -> _Ring:
    try:
        ring = msgspec.json.decode(data, type=_Ring)
    except msgspec.DecodeError as exc:
        raise KeyringError(f"{what} is not a valid key ring: {exc}") from None
    if ring.active not in ring.keys:
        raise KeyringError(f"{what}: active key {ring.active!r} is not in the ring")
    return ring


def _raw(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise KeyringError(f"{what} holds a key that is not base64") from None


def new_signing_ring() -> SigningRing:
    key = generate_signing_key()
    return SigningRing(active=key, keys={key.kid: key})


def rotate_signing_ring(ring: SigningRing) -> SigningRing:
    """A new active key; the old ones stay accepted until dropped with ``retire``."""
    key = generate_signing_key()
    return SigningRing(active=key, keys={**ring.keys, key.kid: key})


def encode_signing_ring(ring: SigningRing) -> bytes:
    keys = {
        kid: base64.b64encode(
            key.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        ).decode()
        for kid, key in ring.keys.items()
    }
    return canonical({"active": ring.active.kid, "keys": keys})


def decode_signing_ring(data: bytes) -> SigningRing:
    ring = _decode_ring(data, "signing key ring")
    keys: dict[str, SigningKey] = {}
    for kid, text in ring.keys.items():
        try:
            private = Ed25519PrivateKey.from_private_bytes(_raw(text, "signing key ring"))
        except ValueError:
            raise KeyringError(f"signing key {kid!r} is not an Ed25519 private key") from None
        keys[kid] = SigningKey(kid=kid, private=private)
    return SigningRing(active=keys[ring.active], keys=keys)


def new_data_ring() -> DataRing:
    key = generate_data_key()
    return DataRing(active=key, keys={key.kid: key.key})


def rotate_data_ring(ring: DataRing) -> DataRing:
    key = generate_data_key()
    return DataRing(active=key, keys={**ring.keys, key.kid: key.key})


def encode_data_ring(ring: DataRing) -> bytes:
    keys = {kid: base64.b64encode(key).decode() for kid, key in ring.keys.items()}
    return canonical({"active": ring.active.kid, "keys": keys})


def decode_data_ring(data: bytes) -> DataRing:
    ring = _decode_ring(data, "data key ring")
    keys = {kid: _raw(text, "data key ring") for kid, text in ring.keys.items()}
    for kid, key in keys.items():
        if len(key) != 32:
            raise KeyringError(f"data key {kid!r} is not 256 bits")
    return DataRing(active=DataKey(kid=ring.active, key=keys[ring.active]), keys=keys)


def encode_public_keys(keys: Mapping[str, Ed25519PublicKey]) -> bytes:
    return canonical({kid: base64.b64encode(public_bytes(key)).decode() for kid, key in keys.items()})


def decode_public_keys(data: bytes) -> dict[str, Ed25519PublicKey]:
    try:
        raw = msgspec.json.decode(data, type=dict[str, str])
    except msgspec.DecodeError as exc:
        raise KeyringError(f"public signing keys are not valid JSON: {exc}") from None
    out: dict[str, Ed25519PublicKey] = {}
    for kid, text in raw.items():
        try:
            out[kid] = load_public_key(_raw(text, "public signing keys"))
        except ValueError:
            raise KeyringError(f"public signing key {kid!r} is not an Ed25519 key") from None
    return out
