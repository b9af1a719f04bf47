"""The sidecar's runtime state: the config being served, swapped atomically, and the long-lived books.

Built at startup and passed to the app; nothing here lives in module globals.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sluicegate_contract.sealing import ConfigRejected

from .attribution import PodIdentity
from .budget import BudgetBook
from .catalog import ModelCatalog
from .configload import LoadedConfig, load_config
from .health import HealthBook
from .ledger import Ledger, charges, read_entries
from .metrics import LabelGuard, Metrics
from .upstream import Upstream, build_client

log = logging.getLogger("sluicegate.sidecar")


@dataclass(frozen=True, slots=True)
class Settings:
    config_dir: Path
    namespace: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    receive_timeout: float = 30.0
    poll_interval: float = 1.0
    drain_seconds: float = 25.0
    access_log: bool = True
    default_tier: str | None = None  # the Pod's sluicegate.io/default-tier: the floor for ``auto``
    budget_wait_seconds: float = 5.0  # most a request waits for reservations in flight to settle


@dataclass(frozen=True, slots=True)
class Served:
    """One verified config and everything derived from it; replaced whole, never edited."""

    loaded: LoadedConfig
    catalog: ModelCatalog
    clients: Mapping[str, Upstream]
    guard: LabelGuard

    @property
    def serial(self) -> int:
        return self.loaded.config.serial


@dataclass
class Gateway:
    settings: Settings
    public_keys: Mapping[str, Ed25519PublicKey]
    data_keys: Callable[[], Mapping[str, bytes]]
    ledger: Ledger
    metrics: Metrics
    pod: PodIdentity = field(default_factory=PodIdentity)
    health: HealthBook = field(default_factory=HealthBook)
    budgets: BudgetBook = field(default_factory=lambda: BudgetBook(()))
    rng: random.Random = field(default_factory=random.Random)
    served: Served | None = None
    last_rejection: str | None = None
    draining: bool = False
    inflight: int = 0
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _retired: list[Upstream] = field(default_factory=list)
    _settled: asyncio.Event | None = None

    def signal_settled(self) -> None:
        """A reservation was settled or released: wake the requests waiting for budget room."""
        event, self._settled = self._settled, None
        if event is not None:
            event.set()

    async def wait_settled(self, seconds: float) -> None:
        """Wait until a reservation is settled or released, at most ``seconds``."""
        if self._settled is None:
            self._settled = asyncio.Event()
        event = self._settled
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` detached (ledger writes after the response), keeping a reference until done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def try_load(self, now: datetime | None = None) -> bool:
        """Load a newer verified config if there is one; a bad one is refused and counted."""
        current = self.served.serial if self.served else 0
        try:
            loaded = load_config(
                self.settings.config_dir,
                self.public_keys,
                self.data_keys(),
                namespace=self.settings.namespace,
                now=now or datetime.now(UTC),
                min_serial=current,
            )
        except ConfigRejected as exc:
            if exc.reason == "rollback" and self.served is not None:
                return False  # the same config seen again: nothing new
            if self.last_rejection != str(exc):
                log.warning(
                    "config refused (%s): %s; serving serial %s", exc.reason, exc.detail, current or "none"
                )
                self.metrics.config_rejected.labels(exc.reason).inc()
            self.last_rejection = str(exc)
            return False
        self.swap(loaded)
        return True

    def swap(self, loaded: LoadedConfig) -> None:
        old = self.served
        clients: dict[str, Upstream] = {}
        for provider in loaded.config.providers:
            if provider.name not in loaded.connections:
                continue
            reuse = old.clients.get(provider.name) if old else None
            same = old is not None and _same_upstream(old, loaded, provider.name)
            clients[provider.name] = (
                reuse
                if (reuse is not None and same)
                else build_client(provider.provider, provider.timeouts, provider.mock)
            )
            if old is not None and provider.name in old.loaded.connections and not same:
                self.health.clear_key_bad(provider.name)
        catalog = ModelCatalog.from_config(loaded.config, usable=lambda name: name in loaded.connections)
        guard = LabelGuard(
            models=frozenset(f"{p.name}/{m.name}" for p in loaded.config.providers for m in p.models),
            tiers=frozenset(t.name for t in loaded.config.tiers),
        )
        self.budgets.replace_budgets(loaded.config.budgets)
        self.served = Served(loaded=loaded, catalog=catalog, clients=clients, guard=guard)
        self.metrics.config_serial.set(loaded.config.serial)
        self.last_rejection = None
        for name, reason in loaded.unusable.items():
            log.warning("connection %s is unusable: %s", name, reason)
        if old is not None:
            kept = set(map(id, clients.values()))
            self._retired.extend(c for c in old.clients.values() if id(c) not in kept)
        log.info("serving config serial %s for namespace %s", loaded.config.serial, loaded.config.namespace)

    def restore_spend(self, now: datetime) -> int:
        """Rebuild the open windows' spend from the ledger; returns how many entries counted."""
        since = self.budgets.earliest_window_start(now)
        if since is None:
            return 0
        entries = list(charges(read_entries([self.ledger.directory], since=since)))
        self.budgets.restore(entries, now)
        return len(entries)

    async def watch(self) -> None:
        """Poll the config directory; the kubelet swaps ``..data`` atomically: one read, one version."""
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                self.try_load()
            except OSError as exc:  # transient ENOENT during a swap: try again next tick
                log.debug("config read failed: %s", exc)
            if not self.ledger.healthy:  # a full or read-only disk: paid requests wait for this
                await self.ledger.probe()
                self.metrics.ledger_healthy.set(1 if self.ledger.healthy else 0)
            if self._retired and self.inflight == 0:
                retired, self._retired = self._retired, []
                for client in retired:
                    await client.aclose()

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        clients = list(self.served.clients.values()) if self.served else []
        for client in clients + self._retired:
            await client.aclose()
        await self.ledger.aclose()


def _same_upstream(old: Served, new: LoadedConfig, name: str) -> bool:
    before = old.loaded.connections.get(name)
    after = new.connections.get(name)
    old_provider = next((p for p in old.loaded.config.providers if p.name == name), None)
    new_provider = next((p for p in new.config.providers if p.name == name), None)
    return (
        before == after
        and old_provider is not None
        and new_provider is not None
        and old_provider.timeouts == new_provider.timeouts
        and old_provider.mock == new_provider.mock
    )
