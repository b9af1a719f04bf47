"""The operator's keys as Secrets in its own namespace: the Ed25519 signing ring and AES data rings.

Creates a ring when absent, publishes the public signing keys in a ConfigMap, rotates. Never writes
anything of a data key outside the operator's namespace. All API calls go through ``kube.Kube``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from sluicegate_contract.keyring import (
    DataRing,
    SigningRing,
    decode_data_ring,
    decode_signing_ring,
    encode_data_ring,
    encode_public_keys,
    encode_signing_ring,
    new_data_ring,
    new_signing_ring,
    rotate_data_ring,
    rotate_signing_ring,
)

from .kube import AlreadyExists, Kube

SIGNING_SECRET = "sluicegate-signing-keys"  # noqa: S105
PUBLIC_CONFIG_MAP = "sluicegate-signing-public"
DATA_SECRET_PREFIX = "sluicegate-data-keys-"  # noqa: S105
KEYS_FILE = "keys.json"
SERIAL_ANNOTATION = "sluicegate.io/last-serial"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "sluicegate"}


def data_secret_name(namespace: str) -> str:
    return DATA_SECRET_PREFIX + namespace


def _ring_bytes(secret: Mapping[str, Any]) -> bytes:
    data = secret.get("data") or {}
    if KEYS_FILE not in data:
        raise ValueError(f"Secret {secret.get('metadata', {}).get('name')} has no {KEYS_FILE}")
    return base64.b64decode(data[KEYS_FILE])


def _secret_body(name: str, ring_json: bytes, purpose: str, namespace_label: str | None) -> dict[str, Any]:
    labels = {**MANAGED_LABELS, "sluicegate.io/keys": purpose}
    if namespace_label is not None:
        labels["sluicegate.io/namespace"] = namespace_label
    return {
        "metadata": {"name": name, "labels": labels},
        "type": "Opaque",
        "data": {KEYS_FILE: base64.b64encode(ring_json).decode()},
    }


def _serial_annotation(secret: Mapping[str, Any] | None) -> int:
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(SERIAL_ANNOTATION, 0))
    except ValueError:
        return 0


def _keep_previous_only(ring: DataRing, previous: str) -> DataRing:
    """After a rotation keep the new key and the one it replaces: configs sealed with it stay readable."""
    keep = {ring.active.kid, previous}
    return DataRing(active=ring.active, keys={kid: key for kid, key in ring.keys.items() if kid in keep})


class Keystore:
    """Key rings stored in ``namespace`` (the operator's own)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self._signing: SigningRing | None = None

    async def cached_signing_ring(self) -> SigningRing:
        """The signing ring, read once and kept until ``forget_signing_ring`` (its Secret changed)."""
        if self._signing is None:
            self._signing = await self.signing_ring()
        return self._signing

    def forget_signing_ring(self) -> None:
        self._signing = None

    async def signing_ring(self) -> SigningRing:
        """The signing ring, created on first use (two replicas racing both end up with the winner's)."""
        secret = await self._kube.read_secret(self.namespace, SIGNING_SECRET)
        if secret is None:
            ring = new_signing_ring()
            body = _secret_body(SIGNING_SECRET, encode_signing_ring(ring), "signing", None)
            try:
                await self._kube.create_secret(self.namespace, body)
            except AlreadyExists:
                return await self.signing_ring()
            await self.publish_public_keys(ring)
            return ring
        return decode_signing_ring(_ring_bytes(secret))

    async def public_keys_json(self) -> str:
        """``{kid: base64 raw public key}`` for every accepted signing key (the sidecar's env value)."""
        ring = await self.signing_ring()
        return encode_public_keys(ring.public_keys()).decode()

    async def publish_public_keys(self, ring: SigningRing | None = None) -> None:
        ring = ring or await self.signing_ring()
        public = encode_public_keys(ring.public_keys()).decode()
        current = await self._kube.read_config_map(self.namespace, PUBLIC_CONFIG_MAP)
        if current is not None and (current.get("data") or {}).get(KEYS_FILE) == public:
            return
        body = {
            "metadata": {"name": PUBLIC_CONFIG_MAP, "labels": dict(MANAGED_LABELS)},
            "data": {KEYS_FILE: public},
        }
        await self._kube.apply_config_map(self.namespace, body)

    async def rotate_signing_key(self) -> SigningRing:
        """A new active signing key; the old ones stay accepted (and published)."""
        ring = rotate_signing_ring(await self.signing_ring())
        patch = {"data": {KEYS_FILE: base64.b64encode(encode_signing_ring(ring)).decode()}}
        await self._kube.patch_secret(self.namespace, SIGNING_SECRET, patch)
        await self.publish_public_keys(ring)
        return ring

    async def data_ring(self, namespace: str, *, create: bool) -> DataRing | None:
        """An app namespace's data ring; created when ``create`` (render), never by the key service."""
        name = data_secret_name(namespace)
        secret = await self._kube.read_secret(self.namespace, name)
        if secret is not None:
            return decode_data_ring(_ring_bytes(secret))
        if not create:
            return None
        ring = new_data_ring()
        try:
            await self._kube.create_secret(
                self.namespace, _secret_body(name, encode_data_ring(ring), "data", namespace)
            )
        except AlreadyExists:
            return await self.data_ring(namespace, create=False)
        return ring

    async def data_ring_and_serial(self, namespace: str) -> tuple[DataRing, int]:
        """The namespace's data ring (created when absent) and its last serial, in one read."""
        secret = await self._kube.read_secret(self.namespace, data_secret_name(namespace))
        if secret is None:
            ring = await self.data_ring(namespace, create=True)
            assert ring is not None
            return ring, await self.last_serial(namespace)
        return decode_data_ring(_ring_bytes(secret)), _serial_annotation(secret)

    async def last_serial(self, namespace: str) -> int:
        """The highest serial ever sealed for ``namespace``: survives a deleted config Secret."""
        return _serial_annotation(await self._kube.read_secret(self.namespace, data_secret_name(namespace)))

    async def record_serial(self, namespace: str, serial: int) -> None:
        patch = {"metadata": {"annotations": {SERIAL_ANNOTATION: str(serial)}}}
        await self._kube.patch_secret(self.namespace, data_secret_name(namespace), patch)

    async def rotate_data_key(self, namespace: str) -> DataRing:
        current = await self.data_ring(namespace, create=True)
        assert current is not None
        ring = _keep_previous_only(rotate_data_ring(current), current.active.kid)
        patch = {"data": {KEYS_FILE: base64.b64encode(encode_data_ring(ring)).decode()}}
        await self._kube.patch_secret(self.namespace, data_secret_name(namespace), patch)
        return ring

    async def delete_data_ring(self, namespace: str) -> bool:
        """False when there was none."""
        return await self._kube.delete_secret(self.namespace, data_secret_name(namespace))
