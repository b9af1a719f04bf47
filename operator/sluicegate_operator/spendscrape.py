"""Budget spend from the sidecars: scrape every injected Pod's ``:9470/metrics``, then write the BudgetPolicy
status, Events and alert webhooks. The I/O shell around ``spendstatus``; it computes nothing itself.

Until the lease phase each sidecar enforces its own cap: this only reports the sum across sidecars.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from sluicegate_contract.sidecarpod import OPS_PORT

from .alertsend import Resolve, post_alert, system_resolve, vet
from .alerttargets import Refused, WebhookPolicy
from .budgetgauges import MetricsError, parse_budget_metrics
from .crparse import PLURALS, BudgetPolicySpec, ResourceError, parse_spec
from .injection import INJECT_LABEL
from .kube import Kube
from .spendstatus import (
    SidecarMetrics,
    SpendStatus,
    ThresholdAlert,
    alert_memory,
    alert_payload,
    merge_memory,
    spend_status,
    webhook_condition,
)

PLURAL = PLURALS["BudgetPolicy"]
ALERT_REASON = "BudgetThresholdCrossed"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpendSettings:
    interval_seconds: float = 30.0  # how often each BudgetPolicy's status is refreshed
    namespaces_per_second: float = 10.0  # at most; many namespaces stretch a round beyond the interval
    webhook_check_seconds: float = 300.0  # how long an AlertWebhooks check of a policy is reused
    metrics_port: int = OPS_PORT
    timeout_seconds: float = 2.0  # per sidecar
    max_metrics_bytes: int = 4 * 1024 * 1024
    webhook_timeout_seconds: float = 5.0
    # Which alert webhook targets are allowed besides public https hosts (--alert-webhook-allow).
    webhook_policy: WebhookPolicy = field(default_factory=WebhookPolicy)
    webhook_ssl: ssl.SSLContext | None = None  # None: the system's trusted CAs
    resolve: Resolve = system_resolve  # host name → addresses, for the webhook checks


class SpendReporter:
    """Scrapes each namespace at most once per half interval, however many policies it holds."""

    def __init__(
        self,
        kube: Kube,
        settings: SpendSettings,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        *,
        lock: Callable[[str], asyncio.Lock] | None = None,
    ) -> None:
        self._kube, self._settings, self._clock, self._monotonic = kube, settings, clock, monotonic
        self._resolve = settings.resolve
        self._lock = lock or self._own_lock
        self._own_locks: dict[str, asyncio.Lock] = {}
        self._scrapes: dict[str, tuple[float, tuple[SidecarMetrics, ...]]] = {}
        self._scrape_locks: dict[str, asyncio.Lock] = {}
        self._webhook_checks: dict[tuple[str, str], tuple[float, Any, dict[str, str] | None]] = {}
        self._alerted: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # until the annotation is seen

    @property
    def settings(self) -> SpendSettings:
        return self._settings

    @property
    def interval_seconds(self) -> float:
        return self._settings.interval_seconds

    @property
    def namespaces_per_second(self) -> float:
        return self._settings.namespaces_per_second

    async def report(self, policy: Mapping[str, Any]) -> SpendStatus | None:
        """Refresh one BudgetPolicy's spend status; raise its new threshold alerts.

        ``policy`` may be the last copy seen on the watch: when nothing would change there, nothing is read or
        written. Otherwise the status is computed from a fresh read under the namespace's lock (the reconciler
        writes the same ``conditions`` list under it), so neither writer undoes the other's work.
        """
        meta = policy.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        sidecars = await self.sidecars(namespace)
        webhooks_checked = await self._checked_webhooks(policy)
        alerted = merge_memory(alert_memory(policy), self._alerted.get((namespace, name), {}))
        seen = spend_status(
            policy, sidecars, now=self._clock(), alerted=alerted, webhooks_checked=webhooks_checked
        )
        if seen is None or (not seen.alerts and not seen.differs_from(policy.get("status"))):
            return seen
        async with self._lock(namespace):
            fresh = await self._kube.read_custom(namespace, PLURAL, name)
            if fresh is None or (fresh.get("metadata") or {}).get("deletionTimestamp"):
                return None
            alerted = merge_memory(alert_memory(fresh), self._alerted.get((namespace, name), {}))
            result = spend_status(
                fresh, sidecars, now=self._clock(), alerted=alerted, webhooks_checked=webhooks_checked
            )
            if result is None:
                return None
            if result.differs_from(fresh.get("status")):
                await self._kube.patch_custom_status(namespace, PLURAL, name, result.as_patch())
        if result.alerts:
            self._alerted[(namespace, name)] = {k: dict(v) for k, v in result.memory.items()}
            for alert in result.alerts:
                logger.info("%s", alert.message)
                await self._event(fresh, "Warning", ALERT_REASON, alert.message)
                await self._deliver(fresh, result, alert)
            await self._kube.patch_custom(namespace, PLURAL, name, result.memory_patch())
        return result

    async def sidecars(self, namespace: str) -> tuple[SidecarMetrics, ...]:
        """What every injected Pod of ``namespace`` reports (cached for half an interval)."""
        async with self._scrape_locks.setdefault(namespace, asyncio.Lock()):
            cached = self._scrapes.get(namespace)
            if cached is not None and self._monotonic() - cached[0] < self._settings.interval_seconds / 2:
                return cached[1]
            result = await self._scrape(namespace)
            self._scrapes[namespace] = (self._monotonic(), result)
            return result

    def _own_lock(self, namespace: str) -> asyncio.Lock:
        return self._own_locks.setdefault(namespace, asyncio.Lock())

    async def _scrape(self, namespace: str) -> tuple[SidecarMetrics, ...]:
        pods = await self._kube.list_pods(namespace, f"{INJECT_LABEL}=true")
        targets = []
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            status = pod.get("status") or {}
            if (
                labels.get(INJECT_LABEL) == "true"
                and status.get("phase") == "Running"
                and status.get("podIP")
            ):
                targets.append(pod)
        if not targets:
            return ()
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            return tuple(await asyncio.gather(*(self._fetch(session, pod) for pod in targets)))

    async def _fetch(self, session: aiohttp.ClientSession, pod: Mapping[str, Any]) -> SidecarMetrics:
        meta = pod.get("metadata") or {}
        name, labels = str(meta.get("name")), dict(meta.get("labels") or {})
        ip = str((pod.get("status") or {}).get("podIP"))
        host = f"[{ip}]" if ":" in ip else ip
        limit = self._settings.max_metrics_bytes
        try:
            async with session.get(
                f"http://{host}:{self._settings.metrics_port}/metrics", allow_redirects=False
            ) as response:
                if response.status != 200:
                    return SidecarMetrics(name, labels, None, f"HTTP {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > limit:
                        return SidecarMetrics(name, labels, None, f"metrics larger than {limit} bytes")
            return SidecarMetrics(name, labels, parse_budget_metrics(body.decode("utf-8", "replace")))
        except TimeoutError:
            return SidecarMetrics(name, labels, None, "timed out")
        except aiohttp.ClientError as exc:
            return SidecarMetrics(name, labels, None, type(exc).__name__)
        except MetricsError as exc:
            return SidecarMetrics(name, labels, None, f"unreadable metrics: {exc}")

    async def _deliver(self, policy: Mapping[str, Any], result: SpendStatus, alert: ThresholdAlert) -> None:
        """POST the alert to each of spec.alerts.webhooks; a failure is logged and posted as an Event."""
        for secret_name, key, style in result.webhooks:
            problem = await self._post_webhook(alert.namespace, secret_name, key, alert_payload(alert, style))
            if problem:
                refused = problem.startswith("refused:")
                message = (
                    f"alert webhook from Secret {secret_name} {'was' if refused else 'failed:'} {problem}"
                )
                logger.warning("%s/%s: %s", alert.namespace, alert.policy, message)
                reason = "AlertWebhookRefused" if refused else "AlertWebhookFailed"
                await self._event(policy, "Warning", reason, message)

    async def _webhook_url(self, namespace: str, secret_name: str, key: str) -> tuple[str | None, str]:
        """The URL in the Secret, or None and why not."""
        secret = await self._kube.read_secret(namespace, secret_name)
        if secret is None:
            return None, "Secret not found"
        try:
            return base64.b64decode((secret.get("data") or {})[key]).decode().strip(), ""
        except (KeyError, ValueError, binascii.Error):
            return None, f"Secret has no readable key {key!r}"

    async def _post_webhook(self, namespace: str, secret_name: str, key: str, payload: Any) -> str:
        """'' when delivered, else what went wrong (never the URL: it is a secret)."""
        url, problem = await self._webhook_url(namespace, secret_name, key)
        if url is None:
            return problem
        return await post_alert(
            url,
            payload,
            self._settings.webhook_policy,
            timeout_seconds=self._settings.webhook_timeout_seconds,
            resolve=self._resolve,
            ssl_context=self._settings.webhook_ssl,
        )

    async def _checked_webhooks(self, policy: Mapping[str, Any]) -> dict[str, str] | None:
        """``_check_webhooks``, reused a while per policy generation (it reads Secrets, resolves names)."""
        meta = policy.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        cached = self._webhook_checks.get(key)
        now = self._monotonic()
        if (
            cached is not None
            and cached[1] == meta.get("generation")
            and now - cached[0] < self._settings.webhook_check_seconds
        ):
            return cached[2]
        checked = await self._check_webhooks(policy)
        self._webhook_checks[key] = (now, meta.get("generation"), checked)
        return checked

    async def _check_webhooks(self, policy: Mapping[str, Any]) -> dict[str, str] | None:
        """The AlertWebhooks condition: every webhook's URL checked against the allow-list now."""
        try:
            spec = parse_spec(policy, BudgetPolicySpec)
        except ResourceError:
            return None
        namespace = str((policy.get("metadata") or {}).get("namespace") or "")
        refusals: list[str] = []
        for hook in spec.alerts.webhooks:
            ref = hook.url_secret_ref
            url, problem = await self._webhook_url(namespace, ref.name, ref.key)
            if url is None:
                refusals.append(f"Secret {ref.name}: {problem}")
                continue
            try:
                await vet(url, self._settings.webhook_policy, self._resolve)
            except Refused as exc:
                refusals.append(f"Secret {ref.name} key {ref.key}: refused: {exc}")
            except OSError:
                pass  # a lookup that fails now is retried at delivery, not a refusal
        return webhook_condition(refusals, len(spec.alerts.webhooks))

    async def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self._kube.post_event(obj, type=type_, reason=reason, message=message, now=self._clock())
        except Exception as exc:  # an Event is best effort
            logger.warning("could not post event %s: %s", reason, exc)
