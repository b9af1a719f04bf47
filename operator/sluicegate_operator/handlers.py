"""kopf wiring: thin handlers that mark a namespace dirty for the NamespaceReconciler (reconciler.py).

Every event (a CR, a referenced Secret, the config Secret, an operator key Secret) re-renders the whole
namespace; an unchanged render writes nothing. The registry is built by a function (never kopf's global).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from .keystore import DATA_SECRET_PREFIX, SIGNING_SECRET, Keystore
from .kube import GROUP, VERSION, Kube
from .reconciler import CONFIG_SECRET, PLURALS
from .reconciler import NamespaceReconciler as NamespaceReconciler
from .reconciler import OperatorOptions as OperatorOptions
from .spendscrape import SpendReporter
from .webhook import register_webhooks

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
    if fast:  # tests: react within a fraction of a second, no discovery of namespaces/CRDs
        settings.watching.server_timeout = 10
        settings.watching.client_timeout = 15
        settings.watching.connect_timeout = 2
        settings.watching.reconnect_backoff = 0.05
        settings.scanning.disabled = True
        settings.networking.request_timeout = 10
    return settings


def build_registry(
    kube: Kube,
    keystore: Keystore,
    options: OperatorOptions,
    reconciler: NamespaceReconciler,
    *,
    webhook_id: str = "mutate-pods",
) -> kopf.OperatorRegistry:
    """All of the operator's handlers, in a registry of their own."""
    registry = kopf.OperatorRegistry()
    operator_ns = options.operator_namespace

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

    @kopf.on.cleanup(registry=registry)
    async def stop_workers(**_: Any) -> None:
        await reconciler.close()

    @kopf.index(GROUP, VERSION, "providerconnections", id="connection_secrets", registry=registry)
    async def connection_secrets(namespace: str | None, spec: kopf.Spec, **_: Any) -> object:
        ref = spec.get("apiKeySecretRef")
        return {(namespace, str(ref["name"])): None} if isinstance(ref, Mapping) and "name" in ref else None

    for plural in PLURALS.values():

        @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-changed", registry=registry)
        async def resource_changed(namespace: str | None, **_: Any) -> None:
            if namespace:
                reconciler.trigger(namespace)

    @kopf.on.event("v1", "secrets", id="secret-changed", registry=registry)
    async def secret_changed(
        namespace: str | None, name: str, labels: Mapping[str, str], **kwargs: Any
    ) -> None:
        referenced: kopf.Index[tuple[str, str], None] = kwargs["connection_secrets"]
        if namespace is None:
            return
        if namespace == operator_ns and name == SIGNING_SECRET:
            for known in reconciler.namespaces:
                reconciler.trigger(known)
        elif namespace == operator_ns and name.startswith(DATA_SECRET_PREFIX):
            app_ns = labels.get("sluicegate.io/namespace")
            if app_ns and app_ns in reconciler.namespaces:
                reconciler.trigger(app_ns)
        elif name == CONFIG_SECRET or (namespace, name) in referenced:
            reconciler.trigger(namespace)

    if options.spend is not None:
        reporter = SpendReporter(kube, options.spend, lambda: datetime.now(UTC), lock=reconciler.lock)
        _register_spend_timer(registry, reporter)
    if options.injection is not None:
        register_webhooks(registry, keystore, options.injection, webhook_id=webhook_id)
    return registry


def _register_spend_timer(registry: kopf.OperatorRegistry, reporter: SpendReporter) -> None:
    """Every interval, each BudgetPolicy's status gets the spend its sidecars report (kopf pauses the timer
    on a standby replica; a timer makes kopf keep a finalizer on the policy)."""

    @kopf.timer(
        GROUP, VERSION, "budgetpolicies", id="budget-spend",
        interval=reporter.settings.interval_seconds, registry=registry,
    )  # fmt: skip
    async def report_spend(body: kopf.Body, **_: Any) -> None:
        try:
            await reporter.report(dict(body))
        except Exception:  # keep the timer's rhythm; the next tick tries again
            logger.exception(
                "reporting the spend of %s/%s failed", body.metadata.namespace, body.metadata.name
            )
