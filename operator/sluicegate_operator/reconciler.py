"""The level-based namespace reconciler: one worker per namespace renders, seals and writes the config
Secret and the CRs' status. Talks to Kubernetes only through Kube; registers no kopf handler.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluicegate_contract.timestamps import format_time

from .connections import secrets_from_objects
from .crparse import GROUP, PLURALS, VERSION
from .injection import InjectionSettings
from .keystore import Keystore
from .kube import AlreadyExists, Kube
from .render import RenderError, RenderResult, render_namespace
from .scheduler import ScheduleSettings
from .spendscrape import SpendSettings
from .status import StatusUpdate, build_status, failed_budget_report

CONFIG_SECRET = "sluicegate-config"  # noqa: S105 (a name, not a secret)
LABELS = {"app.kubernetes.io/managed-by": "sluicegate", "sluicegate.io/config": "true"}
A_HASH, A_SERIAL, A_DIGEST, A_RENEW = (
    "sluicegate.io/content-hash",
    "sluicegate.io/serial",
    "sluicegate.io/config-digest",
    "sluicegate.io/renew-after",
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OperatorOptions:
    operator_namespace: str = "sluicegate-system"
    injection: InjectionSettings | None = None  # None: no admission webhooks
    resync_seconds: float = 600.0
    spend: SpendSettings | None = None  # None: BudgetPolicy status shows no spend
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)


def _digest(body: bytes, sig: bytes) -> str:
    return hashlib.sha256(body + b"\n" + sig).hexdigest()


def _serial_of(secret: Mapping[str, Any] | None) -> int:
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(A_SERIAL, 0))
    except ValueError:
        return 0


def _referenced_secrets(resources: Sequence[Mapping[str, Any]]) -> set[str]:
    names: set[str] = set()
    for obj in resources:
        ref = (
            (obj.get("spec") or {}).get("apiKeySecretRef")
            if obj.get("kind") == "ProviderConnection"
            else None
        )
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            names.add(ref["name"])
    return names


def _owner(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }


def _failed_budget(exc: RenderError) -> str | None:
    cause = exc.__cause__ or exc.__context__
    name = getattr(exc, "name", None) or getattr(cause, "name", None)
    return name if isinstance(name, str) else None


class NamespaceReconciler:
    """Converges one namespace per call; the Scheduler decides which and when."""

    def __init__(
        self,
        kube: Kube,
        keystore: Keystore,
        options: OperatorOptions,
        clock: Callable[[], datetime],
        seen: Callable[[tuple[str, str, str], str | None], None] = lambda key, version: None,
    ) -> None:
        self._kube, self._keystore, self._options, self._clock = kube, keystore, options, clock
        self._seen = seen  # told each CR's (plural, namespace, name) and resourceVersion as read
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, namespace: str) -> asyncio.Lock:
        """Held while a namespace is reconciled; other writers of the CRs' status hold it too."""
        return self._locks.setdefault(namespace, asyncio.Lock())

    def forget(self, namespace: str) -> None:
        lock = self._locks.get(namespace)
        if lock is not None and not lock.locked():
            del self._locks[namespace]

    async def reconcile(self, namespace: str) -> float | None:
        """Converge one namespace; returns seconds until it should be looked at again (None: not needed)."""
        now = self._clock()
        # Independent reads go together: a reconcile waits on the API server's latency, not on CPU.
        resources, existing = await asyncio.gather(
            self._list_resources(namespace), self._kube.read_secret(namespace, CONFIG_SECRET)
        )
        if not resources:
            if existing is not None and (existing.get("metadata") or {}).get("labels", {}).get(
                "sluicegate.io/config"
            ):
                await self._kube.delete_secret(namespace, CONFIG_SECRET)
                logger.info("namespace %s has no Sluicegate resources left: config removed", namespace)
            await self._remove_keys_if_gone(namespace)
            return None
        secret_objects, (ring, last_serial) = await asyncio.gather(
            self._read_secrets(namespace, sorted(_referenced_secrets(resources))),
            self._keystore.data_ring_and_serial(namespace),
        )
        signing = (await self._keystore.cached_signing_ring()).active
        serial = max(_serial_of(existing), last_serial) + 1
        try:
            result = render_namespace(
                namespace, resources, secrets_from_objects(secret_objects),
                data_key=ring.active, signing_key=signing, serial=serial, now=now,
            )  # fmt: skip
        except RenderError as exc:
            await self._report_failure(resources, exc, now)
            return self._options.resync_seconds
        renew_after = self._renew_after(result)
        if self._needs_write(existing, result, now):
            await self._keystore.record_serial(namespace, serial)
            await self._write_config(namespace, existing, result, resources, renew_after)
        await self._update_statuses(resources, result, now)
        return min(self._options.resync_seconds, (renew_after - now).total_seconds())

    async def _list_resources(self, namespace: str) -> list[dict[str, Any]]:
        listings = await asyncio.gather(*(self._kube.list_custom(namespace, p) for p in PLURALS.values()))
        resources: list[dict[str, Any]] = []
        for plural, listed in zip(PLURALS.values(), listings, strict=True):
            for obj in listed:
                meta = obj.get("metadata") or {}
                self._seen((plural, namespace, str(meta.get("name"))), meta.get("resourceVersion"))
            resources += listed
        return resources

    async def _read_secrets(self, namespace: str, names: Sequence[str]) -> list[dict[str, Any]]:
        found = await asyncio.gather(*(self._kube.read_secret(namespace, name) for name in names))
        return [{**secret, "kind": "Secret"} for secret in found if secret is not None]

    async def _remove_keys_if_gone(self, namespace: str) -> None:
        """A deleted (or Terminating) namespace's data keys go too; an existing one keeps them, with the
        serial that keeps its sidecars from accepting an older config."""
        if await self._kube.namespace_gone(namespace) and await self._keystore.delete_data_ring(namespace):
            logger.info("namespace %s is gone: its data keys were removed", namespace)

    @staticmethod
    def _renew_after(result: RenderResult) -> datetime:
        issued = datetime.strptime(result.config.issued_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        expires = datetime.strptime(result.config.not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return issued + (expires - issued) / 2

    @staticmethod
    def _needs_write(existing: Mapping[str, Any] | None, result: RenderResult, now: datetime) -> bool:
        if existing is None:
            return True
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        data = existing.get("data") or {}
        try:
            body, sig = base64.b64decode(data["config.json"]), base64.b64decode(data["config.sig"])
            renew_after = datetime.strptime(annotations[A_RENEW], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except (KeyError, ValueError):
            return True
        return (
            annotations.get(A_HASH) != result.content_hash
            or annotations.get(A_DIGEST) != _digest(body, sig)  # edited by someone else
            or now >= renew_after
        )

    async def _write_config(
        self,
        namespace: str,
        existing: Mapping[str, Any] | None,
        result: RenderResult,
        resources: Sequence[Mapping[str, Any]],
        renew_after: datetime,
    ) -> None:
        metadata = {
            "name": CONFIG_SECRET,
            "labels": dict(LABELS),
            "annotations": {
                A_HASH: result.content_hash,
                A_SERIAL: str(result.config.serial),
                A_DIGEST: _digest(result.config_json, result.config_sig),
                A_RENEW: format_time(renew_after),
                "sluicegate.io/signing-key-id": result.config.signing_key_id,
            },
            "ownerReferences": [_owner(obj) for obj in resources],
        }
        data = {
            "config.json": base64.b64encode(result.config_json).decode(),
            "config.sig": base64.b64encode(result.config_sig).decode(),
        }
        if existing is None:
            try:
                written = await self._kube.create_secret(
                    namespace, {"metadata": metadata, "type": "Opaque", "data": data}
                )
            except AlreadyExists:
                raise RuntimeError(f"{namespace}/{CONFIG_SECRET} appeared meanwhile; retrying") from None
        else:
            written = await self._kube.patch_secret(
                namespace, CONFIG_SECRET, {"metadata": metadata, "data": data}
            )
        logger.info("sealed %s/%s serial %s", namespace, CONFIG_SECRET, result.config.serial)
        c = result.config
        counts = f"{len(c.providers)} connections, {len(c.tiers)} tiers, {len(c.budgets)} budgets"
        message = f"serial {c.serial}: {counts}"
        await self._event({**written, "apiVersion": "v1", "kind": "Secret"}, "Normal", "Sealed", message)

    async def _update_statuses(
        self, resources: Sequence[Mapping[str, Any]], result: RenderResult, now: datetime
    ) -> None:
        updates = []
        for obj in resources:
            meta = obj.get("metadata") or {}
            report = result.reports.get((str(obj.get("kind")), str(meta.get("name"))))
            if report is not None:
                updates.append(
                    self._apply_status(obj, build_status(report, obj, config=result.config, now=now))
                )
        await asyncio.gather(*updates)

    async def _report_failure(
        self, resources: Sequence[Mapping[str, Any]], exc: RenderError, now: datetime
    ) -> None:
        name = _failed_budget(exc)
        logger.warning("render failed, the previous config keeps serving: %s", exc)
        if name is None:
            return
        for obj in resources:
            if obj.get("kind") == "BudgetPolicy" and (obj.get("metadata") or {}).get("name") == name:
                report = failed_budget_report(name, str(exc))
                await self._apply_status(obj, build_status(report, obj, config=None, now=now))

    async def _apply_status(self, obj: Mapping[str, Any], update: StatusUpdate) -> None:
        meta = obj.get("metadata") or {}
        if update.differs_from(obj.get("status")):
            plural = PLURALS[str(obj.get("kind"))]
            await self._kube.patch_custom_status(
                str(meta.get("namespace")), plural, str(meta.get("name")), update.as_patch()
            )
        for transition in update.events:
            await self._event(
                obj, transition.event_type, transition.condition.reason, transition.event_message
            )

    async def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self._kube.post_event(obj, type=type_, reason=reason, message=message, now=self._clock())
        except Exception as exc:  # an Event is best effort; it must never block the config
            logger.warning("could not post event %s: %s", reason, exc)
