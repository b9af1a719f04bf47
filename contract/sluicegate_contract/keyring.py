"""Key rings as JSON documents: signing keys, per-namespace data keys, published public keys.

Pure encode/decode of bytes; where they are stored (Secrets, files) is the caller's business.
A ring holds an ``active`` key id (used for new seals) and older keys still accepted during rotation.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from .rawkeys import DataRing as DataRing
from .rawkeys import KeyringError as KeyringError
from .rawkeys import decode_data_ring as decode_data_ring
from .rawkeys import decode_public_key_bytes, decode_ring, raw_key
from .sealing import (
    SigningKey,
    canonical,
    generate_data_key,
    generate_signing_key,
    load_public_key,
    public_bytes,
)


@dataclass(frozen=True, slots=True)
class SigningRing:
    active: SigningKey
    keys: Mapping[str, SigningKey]

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {kid: key.public() for kid, key in self.keys.items()}


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
    ring = decode_ring(data, "signing key ring")
    keys: dict[str, SigningKey] = {}
    for kid, text in ring.keys.items():
        try:
            private = Ed25519PrivateKey.from_private_bytes(raw_key(text, "signing key ring"))
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


def encode_public_keys(keys: Mapping[str, Ed25519PublicKey]) -> bytes:
    return canonical({kid: base64.b64encode(public_bytes(key)).decode() for kid, key in keys.items()})


def decode_public_keys(data: bytes) -> dict[str, Ed25519PublicKey]:
    return {kid: load_public_key(raw) for kid, raw in decode_public_key_bytes(data).items()}
