"""Read, verify and open a sealed config directory into what the sidecar serves.

A config that fails verification, or carries a value the sidecar cannot use (fault 33), raises
``ConfigRejected``; a provider key that does not open makes only that connection unusable (fault 15).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sluicegate_contract.configdir import DATA_RING_FILE, KEYS_DIR, PUBLIC_KEYS_FILE, read_sealed
from sluicegate_contract.keyring import KeyringError, decode_data_ring, decode_public_keys
from sluicegate_contract.schema import Config, Provider
from sluicegate_contract.sealing import ConfigRejected, KeyUnsealError, unseal_key, verify_config
from sluicegate_contract.sidecarpod import ENV_SIGNING_PUBLIC_KEYS
from sluicegate_contract.usable import config_problems

from .providers.base import Connection
from .providers.registry import default_base_url


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    connections: Mapping[str, Connection]
    unusable: Mapping[str, str] = field(default_factory=dict)
    body_sha256: str = ""  # of config.json as read: an equal serial after a restart must be this config


def public_keys_from(
    directory: Path, environ: Mapping[str, str] | None = None
) -> dict[str, Ed25519PublicKey]:
    """Trusted signing keys: the webhook-written env var, else the dev keys beside the config."""
    env = os.environ if environ is None else environ
    if env.get(ENV_SIGNING_PUBLIC_KEYS):
        return decode_public_keys(env[ENV_SIGNING_PUBLIC_KEYS].encode("utf-8"))
    path = directory / KEYS_DIR / PUBLIC_KEYS_FILE
    if path.exists():
        return decode_public_keys(path.read_bytes())
    raise KeyringError(f"no trusted signing keys: set {ENV_SIGNING_PUBLIC_KEYS} or provide {path}")


def dev_data_keys(directory: Path) -> dict[str, bytes]:
    path = directory / KEYS_DIR / DATA_RING_FILE
    if not path.exists():
        return {}
    return dict(decode_data_ring(path.read_bytes()).keys)


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


def open_connections(
    config: Config, data_keys: Mapping[str, bytes]
) -> tuple[dict[str, Connection], dict[str, str]]:
    connections: dict[str, Connection] = {}
    unusable: dict[str, str] = {}
    for provider in config.providers:
        api_key: str | None = None
        if provider.api_key is not None:
            try:
                api_key = unseal_key(provider.api_key, data_keys, config.namespace, provider.binding)
            except KeyUnsealError as exc:
                unusable[provider.name] = exc.reason
                continue
        elif provider.provider != "mock":
            unusable[provider.name] = "no_key"
            continue
        connections[provider.name] = _connection(provider, api_key)
    return connections, unusable


def load_config(
    directory: Path,
    public_keys: Mapping[str, Ed25519PublicKey],
    data_keys: Mapping[str, bytes],
    *,
    namespace: str | None,
    now: datetime,
    min_serial: int = 0,
) -> LoadedConfig:
    try:
        body, signature = read_sealed(directory)
    except FileNotFoundError:
        raise ConfigRejected("missing", f"no config.json/config.sig in {directory}") from None
    except OSError as exc:
        raise ConfigRejected("unreadable", f"cannot read the config: {exc}") from None
    config = verify_config(body, signature, public_keys, namespace=namespace, now=now, min_serial=min_serial)
    problems = config_problems(config)
    if problems:
        detail = "; ".join(map(str, problems))
        raise ConfigRejected("unusable", f"serial {config.serial}: {detail}", config.serial)
    connections, unusable = open_connections(config, data_keys)
    return LoadedConfig(
        config=config,
        connections=connections,
        unusable=unusable,
        body_sha256=hashlib.sha256(body).hexdigest(),
    )
