"""Sealing and unsealing of the config: AES-256-GCM provider keys, Ed25519 signature over canonical bytes.

Pure: takes keys, bytes and the time as arguments; reads no files. Every way a config can be bad
raises ``ConfigRejected`` with its own ``reason``; a key that cannot be opened raises ``KeyUnsealError``
(both defined in ``rawkeys``, which the serving sidecar imports without ``cryptography``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .rawkeys import ConfigRejected as ConfigRejected
from .rawkeys import DataKey as DataKey
from .rawkeys import KeyUnsealError as KeyUnsealError
from .schema import SCHEMA_VERSION, Config, KeyBinding, SealedKey

CLOCK_LEEWAY = timedelta(minutes=5)
_AAD_PREFIX = b"sluicegate/provider-key/v1\n"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey

    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def public_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519-" + hashlib.sha256(raw).hexdigest()[:12]


def generate_signing_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(kid=public_key_id(private.public_key()), private=private)


def generate_data_key() -> DataKey:
    key = AESGCM.generate_key(bit_length=256)
    return DataKey(kid="dek-" + hashlib.sha256(key).hexdigest()[:12], key=key)


def public_bytes(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def key_fingerprint(raw_key: str) -> str:
    """First 8 hex of SHA-256 of a provider key: safe to show in status, never the key."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()[:8]


def canonical(value: object) -> bytes:
    """Canonical JSON: sorted keys, no insignificant whitespace, UTF-8."""
    return msgspec.json.encode(value, order="sorted")


def _aad(namespace: str, kid: str, binding: KeyBinding) -> bytes:
    return _AAD_PREFIX + canonical(
        {
            "namespace": namespace,
            "connection": binding.connection,
            "uid": binding.uid,
            "generation": binding.generation,
            "kid": kid,
        }
    )


def seal_key(raw_key: str, data_key: DataKey, namespace: str, binding: KeyBinding) -> SealedKey:
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key.key).encrypt(
        nonce, raw_key.encode("utf-8"), _aad(namespace, data_key.kid, binding)
    )
    return SealedKey(kid=data_key.kid, nonce=_b64(nonce), ciphertext=_b64(ciphertext))


def unseal_key(sealed: SealedKey, data_keys: Mapping[str, bytes], namespace: str, binding: KeyBinding) -> str:
    key = data_keys.get(sealed.kid)
    if key is None:
        raise KeyUnsealError("unknown_data_key", f"no data key with id {sealed.kid!r}")
    try:
        nonce, ciphertext = _unb64(sealed.nonce), _unb64(sealed.ciphertext)
        plain = AESGCM(key).decrypt(nonce, ciphertext, _aad(namespace, sealed.kid, binding))
    except (InvalidTag, binascii.Error, ValueError):
        raise KeyUnsealError(
            "key_binding_mismatch",
            f"key of connection {binding.connection!r} does not open in namespace {namespace!r}",
        ) from None
    return plain.decode("utf-8")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def seal_config(config: Config, signing_key: SigningKey) -> tuple[bytes, bytes]:
    """The exact ``config.json`` bytes and ``config.sig`` (base64 text of the Ed25519 signature)."""
    if config.signing_key_id != signing_key.kid:
        raise ValueError("config.signingKeyId must name the key that signs it")
    body = canonical(config)
    signature = signing_key.private.sign(body)
    return body, base64.b64encode(signature)


def verify_config(
    body: bytes,
    signature: bytes,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    namespace: str | None,
    now: datetime,
    min_serial: int = 0,
) -> Config:
    """Verify then decode; ``min_serial`` is the serial already in use (a new config must be above it)."""
    try:
        header = msgspec.json.decode(body, type=dict[str, object])
    except msgspec.DecodeError as exc:
        raise ConfigRejected("corrupt", f"config.json is not valid JSON ({exc})") from None
    kid = header.get("signingKeyId")
    if not isinstance(kid, str):
        raise ConfigRejected("corrupt", "config.json has no signingKeyId")
    public = public_keys.get(kid)
    if public is None:
        raise ConfigRejected("unknown_signing_key", f"signing key {kid!r} is not trusted")
    try:
        public.verify(_unb64(signature.strip().decode("ascii")), body)
    except (InvalidSignature, binascii.Error, ValueError, UnicodeDecodeError):
        raise ConfigRejected("bad_signature", "config.sig does not verify over config.json") from None
    if header.get("schemaVersion") != SCHEMA_VERSION:
        raise ConfigRejected(
            "unsupported_schema",
            f"schemaVersion {header.get('schemaVersion')!r} is not {SCHEMA_VERSION}",
        )
    try:
        config = msgspec.json.decode(body, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigRejected("corrupt", f"config.json does not match the schema: {exc}") from None
    if body != canonical(config):
        raise ConfigRejected("corrupt", "config.json is not in canonical form")
    if namespace is not None and config.namespace != namespace:
        raise ConfigRejected(
            "wrong_namespace", f"config is for namespace {config.namespace!r}, not {namespace!r}"
        )
    if config.serial <= min_serial:
        raise ConfigRejected(
            "rollback",
            f"serial {config.serial} is not newer than the serial in use ({min_serial})",
            config.serial,
        )
    try:
        not_before, not_after = parse_time(config.not_before), parse_time(config.not_after)
    except ValueError:
        raise ConfigRejected("corrupt", "notBefore/notAfter are not RFC 3339 UTC times") from None
    if now + CLOCK_LEEWAY < not_before:
        raise ConfigRejected("not_yet_valid", f"config is valid from {config.not_before}")
    if now - CLOCK_LEEWAY > not_after:
        raise ConfigRejected("expired", f"config expired at {config.not_after}")
    return config
