"""Read a sealed config directory, have the verifier child check it, and build what the sidecar serves.

A config that fails verification, carries a value the sidecar cannot use (fault 33), or cannot be
checked at all (the child failed) raises ``ConfigRejected``; a provider key that does not open makes
only that connection unusable (fault 15). Nothing here loads ``cryptography``: the child does
(``verifychild``, ``unsealing``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

import msgspec

from sluicegate_contract.configdir import DATA_RING_FILE, KEYS_DIR, PUBLIC_KEYS_FILE, read_sealed
from sluicegate_contract.rawkeys import (
    ConfigRejected,
    KeyringError,
    decode_data_ring,
    decode_public_key_bytes,
)
from sluicegate_contract.schema import Config, Provider
from sluicegate_contract.sidecarpod import ENV_SIGNING_PUBLIC_KEYS

from .providers.base import Connection
from .providers.registry import default_base_url
from .verifychild import VERIFIER, VERIFY_TIMEOUT_SECONDS, run_verifier, run_verifier_async
from .verifyproto import VerifyReply, VerifyRequest


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    connections: Mapping[str, Connection]
    unusable: Mapping[str, str] = field(default_factory=dict)
    body_sha256: str = ""  # of config.json as read: an equal serial after a restart must be this config
    body: bytes = b""  # config.json and config.sig as verified: the same bytes again need no new check
    signature: bytes = b""


class VerifierSettings(Protocol):
    @property
    def verifier(self) -> tuple[str, ...]: ...
    @property
    def verify_timeout(self) -> float: ...


def public_keys_from(directory: Path, environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Trusted signing keys, raw Ed25519: the webhook-written env var, else the dev keys in DIR/keys/."""
    env = os.environ if environ is None else environ
    if env.get(ENV_SIGNING_PUBLIC_KEYS):
        return decode_public_key_bytes(env[ENV_SIGNING_PUBLIC_KEYS].encode("utf-8"))
    path = directory / KEYS_DIR / PUBLIC_KEYS_FILE
    if path.exists():
        return decode_public_key_bytes(path.read_bytes())
    raise KeyringError(f"no trusted signing keys: set {ENV_SIGNING_PUBLIC_KEYS} or provide {path}")


def dev_data_keys(directory: Path) -> dict[str, bytes]:
    path = directory / KEYS_DIR / DATA_RING_FILE
    if not path.exists():
        return {}
    return dict(decode_data_ring(path.read_bytes()).keys)


def read_config(directory: Path) -> tuple[bytes, bytes]:
    """``config.json`` and ``config.sig`` of one generation; raises ``ConfigRejected`` when they are not."""
    try:
        return read_sealed(directory)
    except FileNotFoundError:
        raise ConfigRejected("missing", f"no config.json/config.sig in {directory}") from None
    except OSError as exc:
        raise ConfigRejected("unreadable", f"cannot read the config: {exc}") from None


def _connection(provider: Provider, api_key: str | None) -> Connection:
    base = provider.base_url or default_base_url(provider.provider) or ""
    azure = provider.azure
    return Connection(
        name=provider.name,
        provider=provider.provider,
        base_url=base,
        api_key=api_key,
        azure_api_version=azure.api_version if azure else None,
        azure_deployments=dict(azure.deployments) if azure else {},
    )


def loaded_config(body: bytes, signature: bytes, reply: VerifyReply) -> LoadedConfig:
    """What the child's answer about ``body`` serves; raises its ``ConfigRejected``."""
    if reply.rejected is not None:
        raise ConfigRejected(reply.rejected.reason, reply.rejected.detail, reply.rejected.serial)
    config = msgspec.json.decode(body, type=Config)  # the child verified exactly these bytes
    connections = {
        p.name: _connection(p, reply.keys.get(p.name))
        for p in config.providers
        if p.name not in reply.unusable and (p.name in reply.keys or p.api_key is None)
    }
    return LoadedConfig(
        config=config,
        connections=connections,
        unusable=dict(reply.unusable),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body=body,
        signature=signature,
    )


def load_config(
    directory: Path,
    public_keys: Mapping[str, bytes],
    data_keys: Mapping[str, bytes],
    *,
    namespace: str | None,
    now: datetime,
    min_serial: int = 0,
    verifier: Sequence[str] = VERIFIER,
    timeout: float = VERIFY_TIMEOUT_SECONDS,
) -> LoadedConfig:
    """Read and verify (blocking, in the verifier child); for ``sluicegate config`` and startup."""
    body, signature = read_config(directory)
    request = VerifyRequest(
        body=body,
        signature=signature,
        public_keys=dict(public_keys),
        data_keys=dict(data_keys),
        namespace=namespace,
        now=now,
        min_serial=min_serial,
    )
    return loaded_config(body, signature, run_verifier(request, verifier, timeout))


async def reopen_keys(
    loaded: LoadedConfig, data_keys: Mapping[str, bytes], settings: VerifierSettings, now: datetime
) -> LoadedConfig:
    """``loaded`` (verified before) with its provider keys opened again under new data keys, in the
    verifier child; raises ``ConfigRejected`` when the child fails."""
    request = VerifyRequest(
        body=loaded.body,
        signature=loaded.signature,
        public_keys={},
        data_keys=dict(data_keys),
        namespace=loaded.config.namespace,
        now=now,
        verify=False,
    )
    reply = await run_verifier_async(request, settings.verifier, settings.verify_timeout)
    reopened = loaded_config(loaded.body, loaded.signature, reply)
    return replace(loaded, connections=reopened.connections, unusable=reopened.unusable)
