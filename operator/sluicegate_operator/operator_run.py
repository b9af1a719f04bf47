"""Running the operator: kopf, its admission webhook, its key service and the hosted budget authority,
built at startup from ``RunOptions`` and passed down. ``sluicegate operator`` (``operator_cli``) and the
tests both call ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from .authority.callers import TokenCallers
from .authority.hosted import CONFIG_LABEL, HostedAuthority, hosting
from .handlers import Parts, build_parts, build_registry, build_settings
from .injection import InjectionSettings, SidecarResources
from .keyservice import KeyService, server_tls, serving
from .keystore import Keystore
from .kube import Kube
from .kubeapi import load_configuration
from .objectwatch import WatchSettings
from .reconciler import OperatorOptions
from .scheduler import ScheduleSettings
from .spendscrape import SpendSettings
from .standby import PeeringGate


@dataclass(frozen=True, slots=True)
class Listener:
    addr: str
    port: int
    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class RunOptions:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    operator_namespace: str = "sluicegate-system"
    kubeconfig: str | None = None
    context: str | None = None
    server: str | None = None  # an explicit API URL without auth (tests)
    webhook: Listener | None = None
    keyservice: Listener | None = None
    sidecar_image: str = ""
    keyservice_ca: str | None = None  # PEM handed to sidecars so they can verify the key service
    sidecar_resources: SidecarResources = field(default_factory=SidecarResources)
    sidecar_budget_authority: str | None = None  # injected as the sidecars' --budget-authority
    standalone: bool = False
    liveness: str | None = "http://0.0.0.0:8080/healthz"
    resync_seconds: float = 600.0
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    fast: bool = False  # short watch timeouts, no resource scanning (tests)
    list_page: int = 500  # objects per page when the CRs and Secrets are listed at a (re)start
    spend: SpendSettings | None = field(default_factory=SpendSettings)  # None: no spend in status
    authority: HostedAuthority | None = None  # None: no budget authority (status from sidecar metrics)


def peer_identity() -> str:
    """This replica's name among kopf's peers: the Pod's name (the chart sets POD_ID, as kopf reads it),
    else one made up; the spend refresh finds its own entry in the peering object by it."""
    return os.environ.get("POD_ID") or f"sluicegate@{socket.gethostname()}/{secrets.token_hex(4)}"


def version() -> str:
    try:
        return importlib.metadata.version("sluicegate")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


async def run(
    opts: RunOptions,
    *,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    parts_box: list[Parts] | None = None,
) -> None:
    """Run until ``stop_flag`` is set or a signal arrives; ``parts_box`` receives the parts (tests)."""
    kube = Kube(
        await load_configuration(kubeconfig=opts.kubeconfig, context=opts.context, server=opts.server)
    )
    try:
        keystore = Keystore(kube, opts.operator_namespace)
        image = opts.sidecar_image or f"ghcr.io/sluicegate/sluicegate:{version()}"
        injection = (
            InjectionSettings(
                image=image,
                version=version(),
                key_service_ca=opts.keyservice_ca,
                resources=opts.sidecar_resources,
                budget_authority_url=opts.sidecar_budget_authority,
            )
            if opts.webhook
            else None
        )
        options = OperatorOptions(
            opts.operator_namespace, injection, opts.resync_seconds, spend=opts.spend, schedule=opts.schedule
        )
        settings = build_settings(fast=opts.fast)
        identity = peer_identity()
        gate = None
        if not opts.standalone:
            scope = None if opts.all_namespaces else opts.operator_namespace
            gate = PeeringGate(
                lambda: kube.read_peering(scope, settings.peering.name),
                identity,
                settings.peering.priority,
                ttl=min(5.0, opts.spend.interval_seconds) if opts.spend is not None else 5.0,
            )
        parts = build_parts(kube, keystore, options, lambda: datetime.now(UTC), gate)
        if parts_box is not None:
            parts_box.append(parts)
        if opts.webhook is not None:
            w = opts.webhook
            settings.admission.server = kopf.WebhookServer(
                addr=w.addr, port=w.port, certfile=w.cert, pkeyfile=w.key
            )
        namespaces = () if opts.all_namespaces else (*opts.namespaces, opts.operator_namespace)
        async with contextlib.AsyncExitStack() as stack:
            accounts = None
            if opts.authority is not None:

                async def config_secrets() -> list[dict[str, Any]]:
                    if opts.all_namespaces:
                        return await kube.list_secrets_everywhere(CONFIG_LABEL)
                    found: list[dict[str, Any]] = []
                    for namespace in opts.namespaces:  # RBAC is per namespace then
                        found += await kube.list_secrets(namespace, CONFIG_LABEL)
                    return found

                accounts, _ = await stack.enter_async_context(
                    hosting(
                        opts.authority,
                        config_secrets,
                        keystore.public_keys_json,
                        TokenCallers(kube.review_token),
                    )
                )
            registry = build_registry(
                parts,
                accounts=accounts,
                gate=gate,
                scopes=(None,) if opts.all_namespaces else sorted(set(namespaces)),
                watching=WatchSettings(
                    page=opts.list_page,
                    server_timeout=10 if opts.fast else 300,
                    retry_delay=0.05 if opts.fast else 1.0,
                ),
            )
            if opts.keyservice is not None:
                k = opts.keyservice
                app = KeyService(kube, keystore).app()
                await stack.enter_async_context(
                    serving(app, host=k.addr, port=k.port, tls=server_tls(k.cert, k.key))
                )
            await kopf.operator(
                registry=registry,
                settings=settings,
                clusterwide=opts.all_namespaces,
                namespaces=sorted(set(namespaces)),
                standalone=opts.standalone,
                liveness_endpoint=opts.liveness,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
                identity=cast(Any, identity),  # kopf's Identity: a NewType of str it does not export
            )
    finally:
        await kube.close()
