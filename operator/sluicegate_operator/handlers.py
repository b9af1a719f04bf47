"""kopf wiring: thin handlers that queue a namespace for the Scheduler (scheduler.py).

A tenant's change (a CR, a referenced Secret, the config Secret, a data-key Secret) queues its namespace
urgently, unless the event is the operator's own write; a (re)start's listing and signing-key changes
queue background waves. No kopf index: nothing waits for the whole cluster to be listed (issue 19).
The CRs and Secrets come from the operator's own watches (objectwatch.py), not kopf's; kopf runs the
start-up and clean-up, peering, the admission webhooks and the liveness endpoint.
The registry is built by a function (never kopf's global).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from .accountspend import Accounts, AccountsSpendReporter
from .crparse import PLURALS
from .keystore import DATA_SECRET_PREFIX, SIGNING_SECRET, Keystore
from .kube import Kube
from .objectwatch import ObjectWatch, WatchEvent, WatchSettings
from .reconciler import CONFIG_SECRET, NamespaceReconciler, OperatorOptions
from .scheduler import Scheduler
from .spendloop import SpendLoop
from .spendscrape import SpendReporter
from .standby import PeeringGate
from .watchstate import Change, ObjectKey, WatchIndex
from .webhook import register_webhooks

GC_DELAY_SECONDS = 120.0
KOPF_LIST_CHUNK = 500
logger = logging.getLogger(__name__)


def build_settings(*, fast: bool = False) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.name = "sluicegate"
    settings.peering.clusterwide = True
    # Replicas of equal priority all pause each other (kopf's peering rule); a random priority
    # makes exactly one active and the others stand by until it goes away.
    settings.peering.priority = secrets.randbelow(1_000_000)
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = "sluicegate.io/operator"
    # kopf watches no CRs and no Secrets (objectwatch.py does); what it still lists (the namespaces it
    # scans) it lists in pages.
    settings.watching.chunk_size = KOPF_LIST_CHUNK
    if fast:  # tests: react within a fraction of a second, no discovery of namespaces/CRDs
        settings.watching.server_timeout = 10
        settings.watching.client_timeout = 15
        settings.watching.connect_timeout = 2
        settings.watching.reconnect_backoff = 0.05
        settings.scanning.disabled = True
        settings.networking.request_timeout = 10
    return settings


@dataclass(frozen=True, slots=True)
class Parts:
    """What the handlers drive, built once at startup."""

    kube: Kube
    keystore: Keystore
    options: OperatorOptions
    reconciler: NamespaceReconciler
    scheduler: Scheduler
    index: WatchIndex


def build_parts(
    kube: Kube,
    keystore: Keystore,
    options: OperatorOptions,
    clock: Callable[[], datetime],
    gate: PeeringGate | None = None,
) -> Parts:
    """With ``gate`` (kopf peering) nothing is reconciled while another replica leads."""
    index = WatchIndex()
    reconciler = NamespaceReconciler(kube, keystore, options, clock, seen=index.note_read)

    def settled(causes: frozenset[Any]) -> bool:
        return all(kube.writes.is_own(key, v) or index.was_read(key, v) for key, v in causes)

    active = None if gate is None else gate.active
    scheduler = Scheduler(reconciler.reconcile, reconciler.lock, settled, options.schedule, active=active)
    return Parts(kube, keystore, options, reconciler, scheduler, index)


def _unserved(body: Mapping[str, Any]) -> bool:
    """The spec changed since the operator last wrote this object's status (an edit while it was away;
    an object it never served, as at a first install, goes with the wave)."""
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is not None and observed != (body.get("metadata") or {}).get("generation")


def _cause(key: ObjectKey, version: str | None, event_type: str | None) -> object | None:
    """An edit is checked against the operator's own writes before it reconciles; a deletion is not."""
    if event_type in ("ADDED", "MODIFIED"):
        return (key, version)
    return None


def build_registry(
    parts: Parts,
    *,
    webhook_id: str = "mutate-pods",
    accounts: Accounts | None = None,
    gate: PeeringGate | None = None,
    scopes: Sequence[str | None] = (None,),
    watching: WatchSettings = WatchSettings(),
) -> kopf.OperatorRegistry:
    """All of the operator's handlers, in a registry of their own. With ``accounts`` (the hosted budget
    authority's store) BudgetPolicy status is read from the accounts instead of the sidecars' metrics.
    With ``gate`` (kopf peering) the spend refresh runs only while this replica leads. The CRs and Secrets
    of ``scopes`` (namespaces; None: every namespace) come from the operator's own watches
    (objectwatch.py), which start with the operator; kopf watches none of them."""
    registry = kopf.OperatorRegistry()
    kube, keystore, options, index, scheduler = (
        parts.kube, parts.keystore, parts.options, parts.index, parts.scheduler,
    )  # fmt: skip
    operator_ns = options.operator_namespace
    spend_task: list[asyncio.Task[None]] = []
    watch_tasks: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        c = await kube.credentials()
        return kopf.ConnectionInfo(
            server=c.server, ca_path=c.ca_path, insecure=c.insecure, token=c.token,
            scheme="Bearer" if c.token else None,
            certificate_path=c.certificate_path, private_key_path=c.private_key_path,
        )  # fmt: skip

    @kopf.on.startup(registry=registry)
    async def prepare_keys(**_: Any) -> None:
        await keystore.publish_public_keys()
        if options.spend is not None:
            reporter = SpendReporter(
                kube, options.spend, lambda: datetime.now(UTC), lock=parts.reconciler.lock
            )
            if accounts is not None:
                reporter = AccountsSpendReporter(
                    kube, options.spend, lambda: datetime.now(UTC), lock=parts.reconciler.lock
                ).bind_accounts(accounts)
            active = None if gate is None else gate.active
            loop = SpendLoop(reporter, index, active=active)
            spend_task.append(asyncio.create_task(loop.run(), name="spend"))

    @kopf.on.cleanup(registry=registry)
    async def stop_workers(**_: Any) -> None:
        for task in (*spend_task, *watch_tasks):
            task.cancel()
        await asyncio.gather(*spend_task, *watch_tasks, return_exceptions=True)
        await scheduler.close()

    def resource_changed(event: WatchEvent) -> None:
        namespace, name, event_type, version = event.namespace, event.name, event.type, event.version
        key = (event.plural, namespace, name)
        body = event.body or {}
        index.note_resource(event.plural, namespace, name, None if event_type == "DELETED" else body)
        change = index.observe(key, version, event_type)
        if event_type == "DELETED":
            kube.writes.forget(key)
        if change is Change.NEW:  # a (re)start: the background wave, unless edited meanwhile
            scheduler.trigger(namespace, urgent=_unserved(body), cause=(key, version))
        elif change is Change.CHANGED:
            scheduler.trigger(namespace, urgent=True, cause=_cause(key, version, event_type))

    def secret_matters(namespace: str, name: str) -> bool:
        """Checked on each Secret event as it is parsed: any other Secret is dropped, unlogged."""
        if namespace == operator_ns:
            return name == SIGNING_SECRET or name.startswith(DATA_SECRET_PREFIX)
        return name == CONFIG_SECRET or index.is_referenced(namespace, name)

    def secret_changed(event: WatchEvent) -> None:
        namespace, name, event_type, version = event.namespace, event.name, event.type, event.version
        key = ("secrets", namespace, name)
        change = index.observe(key, version, event_type)
        if event_type == "DELETED":
            kube.writes.forget(key)
        if namespace != operator_ns:
            if change is Change.CHANGED:  # at a (re)start the namespace's CRs bring it in
                scheduler.trigger(namespace, urgent=True, cause=_cause(key, version, event_type))
        elif name == SIGNING_SECRET:
            own = event_type != "DELETED" and kube.writes.is_own(key, version)
            if change is Change.CHANGED and not own:
                keystore.forget_signing_ring()
                scheduler.wave(index.namespaces)  # every namespace is resealed, paced
        elif app_ns := event.labels.get("sluicegate.io/namespace"):
            _data_keys_changed(parts, app_ns, key, version, event_type, change)

    @kopf.on.startup(registry=registry)
    async def start_watches(**_: Any) -> None:
        # Our own watches, not kopf's: kopf held every object of the cluster in a worker of its own
        # before any filter ran (issue 19). They start after the keys are published (the handler above).
        for scope in scopes:
            for plural in PLURALS.values():
                watch = ObjectWatch(kube, plural, scope, lambda ns, name: True, resource_changed, watching)
                watch_tasks.append(asyncio.create_task(watch.run(), name=f"watch {plural} {scope or '*'}"))
            watch = ObjectWatch(kube, "secrets", scope, secret_matters, secret_changed, watching)
            watch_tasks.append(asyncio.create_task(watch.run(), name=f"watch secrets {scope or '*'}"))

    if options.injection is not None:
        register_webhooks(registry, keystore, options.injection, webhook_id=webhook_id)
    return registry


def _data_keys_changed(
    parts: Parts, app_ns: str, key: ObjectKey, version: str | None, event_type: str | None, change: Change
) -> None:
    if event_type == "DELETED":
        parts.kube.writes.forget_namespace(app_ns)
        if not parts.index.has_resources(app_ns):
            parts.scheduler.forget(app_ns)
            parts.reconciler.forget(app_ns)
    elif change is Change.NEW and not parts.index.has_resources(app_ns):
        # Keys listed at a (re)start whose namespace shows no resources (yet): look again later; a
        # namespace deleted while the operator was away gets its keys removed then.
        def check() -> None:
            if not parts.index.has_resources(app_ns):
                parts.scheduler.trigger(app_ns, urgent=False)

        asyncio.get_running_loop().call_later(GC_DELAY_SECONDS, check)
        return
    if change is Change.CHANGED and parts.index.has_resources(app_ns):
        parts.scheduler.trigger(app_ns, urgent=True, cause=_cause(key, version, event_type))
