"""The budget authority inside the operator: the same service and store as ``sluicegate authority``, on
every replica (it is stateless over PostgreSQL, so no leader is needed), serving the budgets of the sealed
config Secrets the operator renders. Each is verified with the operator's own public signing keys, as a
sidecar would, so a hand-edited Secret is refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sluicegate_contract.keyring import decode_public_keys
from sluicegate_contract.schema import Config
from sluicegate_contract.sealing import ConfigRejected, verify_config

from ..keyservice import serving
from .callers import TokenCallers
from .service import AuthorityService
from .store import Store

log = logging.getLogger("sluicegate.authority")
CONFIG_SECRET = "sluicegate-config"  # noqa: S105 (a name: the reconciler's CONFIG_SECRET)
CONFIG_LABEL = "sluicegate.io/config=true"


@dataclass
class SecretConfigs:
    """The verified config of each namespace from its config Secret; ``configs`` is replaced, never edited."""

    configs: Mapping[str, Config] = field(default_factory=dict)
    _serials: dict[str, int] = field(default_factory=dict)
    _refused: dict[str, str] = field(default_factory=dict)

    def load(self, now: datetime) -> bool:
        """The service's periodic re-read: nothing to do here, ``refresh`` reads the Secrets."""
        return False

    def refresh(self, secrets: list[dict[str, Any]], public_keys_json: str, now: datetime) -> bool:
        """Take the newest verified config of every namespace from ``secrets``; True when one changed."""
        keys = decode_public_keys(public_keys_json.encode())
        configs = dict(self.configs)
        changed = False
        for secret in secrets:
            meta = secret.get("metadata") or {}
            namespace = str(meta.get("namespace") or "")
            if meta.get("name") != CONFIG_SECRET or not namespace:
                continue
            data = secret.get("data") or {}
            try:
                body = base64.b64decode(data["config.json"])
                signature = base64.b64decode(data["config.sig"])
                config = verify_config(
                    body, signature, keys, namespace=namespace, now=now,
                    min_serial=self._serials.get(namespace, 0),
                )  # fmt: skip
            except (KeyError, ValueError, binascii.Error, ConfigRejected) as exc:
                if getattr(exc, "reason", "") != "rollback" and self._refused.get(namespace) != str(exc):
                    log.warning("config Secret of %s refused: %s", namespace, exc)
                    self._refused[namespace] = str(exc)
                continue
            self._refused.pop(namespace, None)
            if self._serials.get(namespace) == config.serial:
                continue
            self._serials[namespace] = config.serial
            configs[namespace] = config
            changed = True
            log.info("serving budgets of namespace %s at serial %s", namespace, config.serial)
        listed = {
            str((s.get("metadata") or {}).get("namespace") or "")
            for s in secrets
            if (s.get("metadata") or {}).get("name") == CONFIG_SECRET
        }
        for gone in set(configs) - listed:  # its last Sluicegate resource was deleted: no more leases
            del configs[gone]
            self._serials.pop(gone, None)
            changed = True
            log.info("no longer serving budgets of namespace %s: its config Secret is gone", gone)
        if changed:
            self.configs = configs
        return changed


@dataclass(frozen=True, slots=True)
class HostedAuthority:
    database_url: str
    host: str
    port: int
    tls: ssl.SSLContext | None
    lease_ttl_seconds: float = 10.0
    poll_seconds: float = 1.0


ListSecrets = Callable[[], Awaitable[list[dict[str, Any]]]]
PublicKeys = Callable[[], Awaitable[str]]


async def _follow(configs: SecretConfigs, list_secrets: ListSecrets, keys: PublicKeys, every: float) -> None:
    while True:
        try:
            configs.refresh(await list_secrets(), await keys(), datetime.now(UTC))
        except Exception as exc:  # the API server away for a moment: the last configs keep serving
            log.warning("config Secrets not read: %s", exc)
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def hosting(
    settings: HostedAuthority, list_secrets: ListSecrets, public_keys: PublicKeys, callers: TokenCallers
) -> AsyncIterator[tuple[Store, int]]:
    """Serve the authority for the duration of the block; yields the store (for status) and the port."""
    store = await Store.connect(settings.database_url, ttl=timedelta(seconds=settings.lease_ttl_seconds))
    configs = SecretConfigs()
    service = AuthorityService(store, configs, callers)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with serving(service.app(), host=settings.host, port=settings.port, tls=settings.tls) as bound:
            scheme = "https" if settings.tls else "http"
            log.info("budget authority listening on %s://%s:%s", scheme, settings.host, bound)
            tasks.append(
                asyncio.create_task(_follow(configs, list_secrets, public_keys, settings.poll_seconds))
            )
            tasks.append(asyncio.create_task(service.maintain(settings.poll_seconds)))
            yield store, bound
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()
