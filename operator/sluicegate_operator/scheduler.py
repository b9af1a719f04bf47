"""Runs the namespace reconciles: a few workers take namespaces from a WorkQueue, so a wave over thousands
of namespaces (a restart, a signing-key change, the resync) is paced and never crowds out a tenant's edit
or the loop the webhook, the key service and the liveness probe share (issue 19).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .workqueue import Cause, Work, WorkQueue, jittered

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    workers: int = 8  # namespaces reconciled at once
    wave_rate: float = 25.0  # background reconciles started per second, at most
    wave_burst: float = 5.0  # started at once before the rate applies
    retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    standby_delay: float = 5.0  # a namespace due while another replica leads is looked at again then


class Scheduler:
    """Calls ``reconcile(namespace)`` (seconds until it wants another look, or None) from its workers.

    Work queued with causes (the events behind it) is skipped when ``settled`` says each was the operator's
    own write or was already read by a reconcile; it is checked under the namespace's lock, so a write in
    flight has been recorded by then.
    """

    def __init__(
        self,
        reconcile: Callable[[str], Awaitable[float | None]],
        lock: Callable[[str], asyncio.Lock],
        settled: Callable[[frozenset[Cause]], bool],
        settings: ScheduleSettings,
        *,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        active: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._reconcile, self._lock, self._settled, self._settings = reconcile, lock, settled, settings
        self._active = active  # kopf peering: False while another replica leads (standby.PeeringGate)
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._queue = WorkQueue(wave_rate=settings.wave_rate, wave_burst=settings.wave_burst)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._failures: dict[str, int] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self.reconciled = 0  # reconciles run (a namespace's events that were all own writes start none)
        self.skipped = 0
        self.deferred = 0  # reconciles put off while standing by

    def trigger(self, namespace: str, *, urgent: bool, cause: Cause | None = None) -> None:
        """Queue ``namespace``; with a ``cause`` (an object and version) only if that is not yet settled."""
        self._queue.add(namespace, urgent=urgent, cause=cause)
        self._ensure_workers()

    def wave(self, namespaces: Iterable[str]) -> None:
        for namespace in namespaces:
            self._queue.add(namespace, urgent=False)
        self._ensure_workers()

    def forget(self, namespace: str) -> None:
        if (timer := self._timers.pop(namespace, None)) is not None:
            timer.cancel()
        self._failures.pop(namespace, None)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    def _ensure_workers(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"reconcile worker {i}")
                for i in range(self._settings.workers)
            ]

    def _later(self, namespace: str, delay: float, *, urgent: bool) -> None:
        if (old := self._timers.pop(namespace, None)) is not None:
            old.cancel()

        def fire() -> None:
            self._timers.pop(namespace, None)
            self.trigger(namespace, urgent=urgent)

        self._timers[namespace] = asyncio.get_running_loop().call_later(max(delay, 1.0), fire)

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            item = self._queue.pop(self._monotonic())
            if not isinstance(item, Work):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), item)
                continue
            try:
                await self._run(item)
            finally:
                self._queue.done(item.namespace)
                self._wake.set()

    async def _run(self, work: Work) -> None:
        namespace = work.namespace
        if self._active is not None and not await self._active():
            # A standby replica: its resync and renewal timers would race the leader's serials.
            self.deferred += 1
            self._later(namespace, self._settings.standby_delay, urgent=work.urgent)
            return
        async with self._lock(namespace):
            if work.causes is not None and self._settled(work.causes):
                self.skipped += 1
                return
            logger.debug("reconciling %s (%s)", namespace, "urgent" if work.urgent else "background")
            try:
                next_in = await self._reconcile(namespace)
            except Exception:
                failures = self._failures.get(namespace, 0)
                delays = self._settings.retry_delays
                delay = delays[min(failures, len(delays) - 1)]
                self._failures[namespace] = failures + 1
                logger.exception("reconciling namespace %s failed; retrying in %ss", namespace, delay)
                self._later(namespace, delay, urgent=work.urgent)
                return
            finally:
                self.reconciled += 1
        self._failures.pop(namespace, None)
        if next_in is None:
            self.forget(namespace)
        else:  # the resync or the config's renewal, up to 20 % early so waves spread out
            self._later(namespace, jittered(next_in, self._rng.random()), urgent=False)
