"""The spend refresh as one paced loop over the namespaces that hold BudgetPolicies.

It was a kopf timer per BudgetPolicy, so idle API traffic grew with the policies (issue 19). The policies
come from the watch (WatchIndex), never from a listing; each namespace costs one Pod listing per round at
most ``namespaces_per_second``. The budget authority (issue 16) replaces the source behind ``Reporter``.
On a standby replica (kopf peering: another replica leads) it neither polls nor writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from .watchstate import WatchIndex

logger = logging.getLogger(__name__)


class Reporter(Protocol):
    """Refreshes one BudgetPolicy's spend status (SpendReporter scrapes the sidecars)."""

    async def report(self, policy: Mapping[str, Any]) -> object: ...

    @property
    def interval_seconds(self) -> float: ...

    @property
    def namespaces_per_second(self) -> float: ...


class SpendLoop:
    """Visits the namespaces holding BudgetPolicies, paced; stands by while ``active()`` says another
    replica leads (kopf's peering), so a standby replica neither polls nor writes status."""

    def __init__(
        self,
        reporter: Reporter,
        index: WatchIndex,
        monotonic: Callable[[], float] = time.monotonic,
        active: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._reporter, self._index, self._monotonic = reporter, index, monotonic
        self._active = active
        self.rounds = 0

    async def _leading(self) -> bool:
        return self._active is None or await self._active()

    async def run(self) -> None:
        pace = 1.0 / self._reporter.namespaces_per_second
        while True:
            started = self._monotonic()
            if await self._leading():
                for namespace in self._index.policy_namespaces():
                    if not await self._leading():
                        break  # stood down mid-round: the active replica reports from now on
                    begun = self._monotonic()
                    await self.report_namespace(namespace)
                    await asyncio.sleep(max(0.0, pace - (self._monotonic() - begun)))
                else:
                    self.rounds += 1
            rest = self._reporter.interval_seconds - (self._monotonic() - started)
            await asyncio.sleep(max(rest, min(pace, self._reporter.interval_seconds)))

    async def report_namespace(self, namespace: str) -> None:
        for policy in self._index.policies(namespace):
            try:
                await self._reporter.report(policy)
            except Exception:  # keep the rhythm; the next round tries again
                name = (policy.get("metadata") or {}).get("name")
                logger.exception("reporting the spend of %s/%s failed", namespace, name)
