"""kopf wiring: thin handlers that queue a namespace for the Scheduler (scheduler.py).

A tenant's change (a CR, a referenced Secret, the config Secret, a data-key Secret) queues its namespace
urgently, unless the event is the operator's own write; a (re)start's listing and signing-key changes
queue background waves. No kopf index: nothing waits for the whole cluster to be listed (issue 19).
kopf watches the CRs; Secrets come from the operator's own watch (secretwatch.py), which keeps only those
that matter.
The registry is built by a function (never kopf's global).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from .accountspend import Accounts, AccountsSpendReporter
from .crparse import GROUP, PLURALS, VERSION
from .keystore import DATA_SECRET_PREFIX, SIGNING_SECRET, Keystore
from .kube import Kube
from .reconciler import CONFIG_SECRET, NamespaceReconciler, OperatorOptions
from .scheduler import Scheduler
from .secretwatch import SecretEvent, SecretWatch, WatchSettings
from .spendloop import SpendLoop
from .spendscrape import SpendReporter
from .standby import PeeringGate
from .watchstate import Change, ObjectKey, WatchIndex
from .webhook import register_webhooks

GC_DELAY_SECONDS = 120.0
LIST_CHUNK = 500  # objects per page of a (re)start's listing
WORKER_IDLE_SECONDS = 0.5
logger = logging.getLogger(__name__)


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps and builds no diff base. The operator registers event handlers only, which never see a diff,
    yet kopf builds one for every event (a deep copy of the object): a large share of its CPU at a restart
    over thousands of objects (issue 19). Nothing is written to the objects either way."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def build_settings(*, fast: bool = False) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.peering.name = "sluicegate"
    settings.peering.clusterwide = True
    # Replicas of equal priority all pause each other (kopf's peering rule); a random priority
    # makes exactly one active and the others stand by until it goes away.
    settings.peering.priority = secrets.randbelow(1_000_000)
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = "sluicegate.io/operator"
    # A (re)start lists every Secret and CR of the cluster: in pages, so that at most one page of bodies
    # (config Secrets are ~13 kB) is held at once and the loop serves events between pages (issue 19).
    settings.watching.chunk_size = LIST_CHUNK
    # kopf keeps a worker (and the object's last event) per object until it has been idle this long:
    # after a listing of ~32,000 objects that is every one of them; our handlers only queue a namespace.
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
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


def _version(body: kopf.Body) -> str | None:
    version = body.metadata.get("resourceVersion")
    return None if version is None else str(version)


def _unserved(body: kopf.Body) -> bool:
    """The spec changed since the operator last wrote this object's status (an edit while it was away;
    an object it never served, as at a first install, goes with the wave)."""
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is not None and observed != body.metadata.get("generation")


def _cause(key: ObjectKey, body: kopf.Body, event_type: str | None) -> object | None:
    """An edit is checked against the operator's own writes before it reconciles; a deletion is not."""
    if event_type in ("ADDED", "MODIFIED"):
        return (key, _version(body))
    return None


def build_registry(
    parts: Parts,
    *,
    webhook_id: str = "mutate-pods",
    accounts: Accounts | None = None,
    gate: PeeringGate | None = None,
    secret_scopes: Sequence[str | None] = (None,),
    secret_watch: WatchSettings = WatchSettings(),
) -> kopf.OperatorRegistry:
    """All of the operator's handlers, in a registry of their own. With ``accounts`` (the hosted budget
    authority's store) BudgetPolicy status is read from the accounts instead of the sidecars' metrics.
    With ``gate`` (kopf peering) the spend refresh runs only while this replica leads. Secrets are watched
    in ``secret_scopes`` (namespaces; None: every namespace) by the operator's own watch (secretwatch.py)."""
    registry = kopf.OperatorRegistry()
    kube, keystore, options, index, scheduler = (
        parts.kube, parts.keystore, parts.options, parts.index, parts.scheduler,
    )  # fmt: skip
    operator_ns = options.operator_namespace
    spend_task: list[asyncio.Task[None]] = []
    secret_tasks: list[asyncio.Task[None]] = []

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
        for task in (*spend_task, *secret_tasks):
            task.cancel()
        await asyncio.gather(*spend_task, *secret_tasks, return_exceptions=True)
        await scheduler.close()

    for plural in PLURALS.values():

        @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-changed", registry=registry)
        async def resource_changed(
            event: kopf.RawEvent, namespace: str | None, name: str, body: kopf.Body,
            resource: kopf.Resource, **_: Any,
        ) -> None:  # fmt: skip
            if not namespace:
                return
            event_type = event.get("type")
            key = (resource.plural, namespace, name)
            index.note_resource(resource.plural, namespace, name, None if event_type == "DELETED" else body)
            change = index.observe(key, _version(body), event_type)
            if event_type == "DELETED":
                kube.writes.forget(key)
            if change is Change.NEW:  # a (re)start: the background wave, unless edited meanwhile
                scheduler.trigger(namespace, urgent=_unserved(body), cause=(key, _version(body)))
            elif change is Change.CHANGED:
                scheduler.trigger(namespace, urgent=True, cause=_cause(key, body, event_type))

    def secret_matters(namespace: str, name: str) -> bool:
        """Checked on each Secret event as it is parsed: any other Secret is dropped, unlogged."""
        if namespace == operator_ns:
            return name == SIGNING_SECRET or name.startswith(DATA_SECRET_PREFIX)
        return name == CONFIG_SECRET or index.is_referenced(namespace, name)

    def secret_changed(event: SecretEvent) -> None:
        namespace, name, event_type, version = event.namespace, event.name, event.type, event.version
        key = ("secrets", namespace, name)
        change = index.observe(key, version, event_type)
        if event_type == "DELETED":
            kube.writes.forget(key)
        if namespace != operator_ns:
            if change is Change.CHANGED:  # at a (re)start the namespace's CRs bring it in
                cause = (key, version) if event_type in ("ADDED", "MODIFIED") else None
                scheduler.trigger(namespace, urgent=True, cause=cause)
        elif name == SIGNING_SECRET:
            own = event_type != "DELETED" and kube.writes.is_own(key, version)
            if change is Change.CHANGED and not own:
                keystore.forget_signing_ring()
                scheduler.wave(index.namespaces)  # every namespace is resealed, paced
        elif app_ns := event.labels.get("sluicegate.io/namespace"):
            _data_keys_changed(parts, app_ns, key, version, event_type, change)

    @kopf.on.startup(registry=registry)
    async def watch_secrets(**_: Any) -> None:
        # Our own watch, not kopf's: kopf would hold every Secret of the cluster in a worker of its own
        # before any filter ran (issue 19). Each scope is a namespace, or None for every namespace.
        for scope in secret_scopes:
            watch = SecretWatch(kube, scope, secret_matters, secret_changed, secret_watch)
            secret_tasks.append(asyncio.create_task(watch.run(), name=f"secret watch {scope or '*'}"))

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
        cause = (key, version) if event_type in ("ADDED", "MODIFIED") else None
        parts.scheduler.trigger(app_ns, urgent=True, cause=cause)
