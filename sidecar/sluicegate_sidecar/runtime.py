"""The sidecar's runtime state: the config being served, swapped atomically, and the long-lived books.

Built at startup and passed to the app; nothing here lives in module globals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluicegate_contract.ledgerfiles import LedgerError, read_entries
from sluicegate_contract.rawkeys import ConfigRejected

from .accesslog import AccessLog
from .attribution import PodIdentity
from .budget import BudgetBook
from .configcheck import ConfigCheck, refuse_rollback
from .configload import LoadedConfig, loaded_config, read_config, reopen_keys
from .connections import build_client, same_upstream
from .drain import Drain
from .ledger.records import charges
from .ledger.writer import Ledger
from .metrics import LabelGuard, Metrics
from .routing.catalog import ModelCatalog
from .routing.health import HealthBook
from .serialstate import Accepted, write_accepted
from .upstream import Upstream, upstream_tls
from .verifychild import VERIFIER, VERIFY_TIMEOUT_SECONDS, run_verifier, run_verifier_async
from .verifyproto import VerifyReply, VerifyRequest

log = logging.getLogger("sluicegate.sidecar")
MISSING_POLLS = 5  # polls in a row without a config before a served sidecar reports it missing
WATCH_STALL_SECONDS = 60.0  # a watcher silent this long (or 30 polls) makes the sidecar not ready


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
    # A reply's last byte (a stream's terminator) always leaves after its ledger line is written, so
    # a killed process never loses the record of spend a client received (docs/architecture.md). True: after
    # it is fdatasynced too (a persistent local directory; costs one fdatasync of latency).
    ledger_sync: bool = False
    budget_wait_seconds: float = 5.0  # most a request waits for reservations in flight to settle
    verifier: tuple[str, ...] = VERIFIER  # the verifier child's command (``verifychild``)
    verify_timeout: float = VERIFY_TIMEOUT_SECONDS  # a child silent this long: the config is refused


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
    public_keys: Mapping[str, bytes]  # trusted signing keys, raw Ed25519: checked by the verifier child
    data_keys: Callable[[], Mapping[str, bytes]]
    ledger: Ledger
    metrics: Metrics
    # Fetches data keys again (key service); called once per back-off step on an unknown key id.
    refresh_keys: Callable[[], Awaitable[bool]] | None = None
    _next_key_refresh: float = 0.0
    _key_refresh_backoff: float = 1.0
    _missing_polls: int = 0  # consecutive polls that found no config (a swap in progress, or gone)
    pod: PodIdentity = field(default_factory=PodIdentity)
    health: HealthBook = field(default_factory=HealthBook)
    budgets: BudgetBook = field(default_factory=lambda: BudgetBook(()))
    rng: random.Random = field(default_factory=random.Random)
    served: Served | None = None
    last_rejection: str | None = None
    # Where the newest accepted serial is kept across restarts (the ledger volume); None: nowhere.
    state_dir: Path | None = None
    accepted: Accepted | None = None
    serial_state_problem: str | None = None  # the record could not be read or written (/readyz)
    watch_beat: float | None = None  # loop time of the watcher's last completed poll; None: not running
    spend_restored: bool = False  # paid requests wait until the ledger's spend is back in the book
    restore_problem: str | None = None
    drain: Drain = field(default_factory=Drain)
    access_log: AccessLog = field(default_factory=AccessLog)  # the request log's lines, in batches
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _retired: list[Upstream] = field(default_factory=list)
    _tls: ssl.SSLContext | None = None  # shared by every upstream connection (``upstream_tls``)
    _settled: asyncio.Event | None = None
    _check: ConfigCheck = field(init=False)

    def __post_init__(self) -> None:
        self._check = ConfigCheck(self.public_keys, self.settings.namespace)

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

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` detached (a cancelled request never cancels it), keeping a reference until done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def try_load(self, now: datetime | None = None) -> bool:
        """Load a newer verified config if there is one; a bad one is refused and counted.

        Never raises: anything that goes wrong while loading is a rejection like a bad signature
        (fault 33), so the last good config keeps serving and the watcher keeps running. Blocks while
        the verifier child runs (startup, tests); the watcher uses ``try_load_async``.
        """
        current = self.served.serial if self.served else 0
        if (begun := self._begin(now, current)) is None:
            return False
        try:
            reply = run_verifier(begun, self.settings.verifier, self.settings.verify_timeout)
        except ConfigRejected as exc:
            return self._rejected(begun, exc, current)
        return self._finish(begun, reply, current)

    async def try_load_async(self, now: datetime | None = None) -> bool:
        """``try_load`` with the verifier child awaited: requests are served meanwhile."""
        current = self.served.serial if self.served else 0
        if (begun := self._begin(now, current)) is None:
            return False
        try:
            reply = await run_verifier_async(begun, self.settings.verifier, self.settings.verify_timeout)
        except ConfigRejected as exc:
            return self._rejected(begun, exc, current)
        return self._finish(begun, reply, current)

    def _begin(self, now: datetime | None, current: int) -> VerifyRequest | None:
        """What to ask the verifier child, or None when the answer is known (refused here if bad)."""
        try:
            body, signature = read_config(self.settings.config_dir)
            served = self.served.loaded if self.served else None
            known = self._check.known(body, signature, served, time.monotonic())
            if known is None:
                return self._check.request(
                    body, signature, self.data_keys(), now or datetime.now(UTC), current
                )
            self._refused(known, current)
        except ConfigRejected as exc:
            self._refused(exc, current)
        except Exception as exc:
            log.exception("config could not be read; serving serial %s", current or "none")
            self._refused(ConfigRejected("unusable", f"{type(exc).__name__}: {exc}"), current)
        return None

    def _finish(self, request: VerifyRequest, reply: VerifyReply, current: int) -> bool:
        if (self.served.serial if self.served else 0) != current:
            return False  # another load won meanwhile: this answer is about a superseded state
        try:
            loaded = loaded_config(request.body, request.signature, reply)
            refuse_rollback(loaded, self.accepted)
            self._missing_polls = 0
            self.swap(loaded)
            return True
        except ConfigRejected as exc:
            return self._rejected(request, exc, current)
        except Exception as exc:
            log.exception("config could not be loaded; serving serial %s", current or "none")
            return self._rejected(
                request, ConfigRejected("unusable", f"{type(exc).__name__}: {exc}"), current
            )

    def _rejected(self, request: VerifyRequest, exc: ConfigRejected, current: int) -> bool:
        """Refuse the config the child was asked about; the same bytes again get this verdict."""
        self._check.remember(request.body, request.signature, current, exc, time.monotonic())
        self._refused(exc, current)
        return False

    def _refused(self, exc: ConfigRejected, current: int) -> None:
        if exc.reason in ("missing", "unreadable") and self.served is not None:
            # Read mid-swap (``..data`` on a removed generation): keep serving, read again at the
            # next poll; only a config gone for MISSING_POLLS polls in a row is reported (fault 14).
            self._missing_polls += 1
            if self._missing_polls < MISSING_POLLS:
                return
        else:
            self._missing_polls = 0
        if exc.reason == "rollback" and self.served is not None and exc.serial == current:
            if self.last_rejection is not None and self.last_rejection.startswith(
                ("missing:", "unreadable:")
            ):
                self.last_rejection = None  # the served config is back in place
            return  # the same config seen again: nothing new
        # an older serial (a config rolled back) falls through: refused and counted once
        if self.last_rejection != str(exc):
            log.warning(
                "config refused (%s): %s; serving serial %s", exc.reason, exc.detail, current or "none"
            )
            self.metrics.config_rejected.labels(exc.reason).inc()
        self.last_rejection = str(exc)

    def swap(self, loaded: LoadedConfig) -> None:
        """Serve ``loaded``: everything is built first, then installed at once (never a partial apply)."""
        served = self._prepare(loaded)
        old = self.served
        for provider in loaded.config.providers:
            if (
                old is not None
                and provider.name in old.loaded.connections
                and not same_upstream(old.loaded, loaded, provider.name)
            ):
                self.health.clear_key_bad(provider.name)
        self.budgets.replace_budgets(loaded.config.budgets)
        self.served = served
        self.metrics.config_serial.set(loaded.config.serial)
        self.last_rejection = None
        for name, reason in loaded.unusable.items():
            log.warning("connection %s is unusable: %s", name, reason)
        if old is not None:
            kept = set(map(id, served.clients.values()))
            self._retired.extend(c for c in old.clients.values() if id(c) not in kept)
        self._remember(loaded)
        log.info("serving config serial %s for namespace %s", loaded.config.serial, loaded.config.namespace)

    def _prepare(self, loaded: LoadedConfig) -> Served:
        """Everything a config is served with; raises (changing nothing) when it cannot be built."""
        old = self.served
        catalog = ModelCatalog.from_config(loaded.config, usable=lambda name: name in loaded.connections)
        guard = LabelGuard(
            models=frozenset(f"{p.name}/{m.name}" for p in loaded.config.providers for m in p.models),
            tiers=frozenset(t.name for t in loaded.config.tiers),
        )
        BudgetBook(loaded.config.budgets)  # the policies' plans build (zones load) or this raises
        clients: dict[str, Upstream] = {}
        tls = self._upstream_tls()
        try:
            for provider in loaded.config.providers:
                if provider.name not in loaded.connections:
                    continue
                reuse = old.clients.get(provider.name) if old else None
                same = old is not None and same_upstream(old.loaded, loaded, provider.name)
                clients[provider.name] = (
                    reuse if (reuse is not None and same) else build_client(provider, tls)
                )
        except Exception:
            reused = set(map(id, old.clients.values())) if old else set()
            self._retired.extend(c for c in clients.values() if id(c) not in reused)
            raise
        return Served(loaded=loaded, catalog=catalog, clients=clients, guard=guard)

    def _upstream_tls(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = upstream_tls()
        return self._tls

    def _remember(self, loaded: LoadedConfig) -> None:
        """Record the accepted serial on the volume, so a restart refuses older configs (fault 34)."""
        record = Accepted(loaded.config.serial, loaded.body_sha256)
        if self.state_dir is None or not loaded.body_sha256 or record == self.accepted:
            return
        try:
            write_accepted(self.state_dir, record)
        except OSError as exc:
            log.error("cannot record config serial %s: %s", record.serial, exc)
            self.serial_state_problem = f"cannot record the accepted serial: {exc.strerror or exc}"
            return
        self.accepted, self.serial_state_problem = record, None

    def restore_spend(self, now: datetime) -> int:
        """Rebuild the open windows' spend from the ledger, once a config is loaded; returns how many
        entries counted. An unreadable ledger is reported (``restore_problem``), never raised: the
        sidecar stays up, refuses paid requests, and ``watch`` tries again."""
        if self.served is None:
            return 0
        since = self.budgets.earliest_window_start(now)
        try:
            entries = [] if since is None else list(charges(read_entries([self.ledger.directory], since)))
        except (OSError, LedgerError) as exc:
            if self.restore_problem is None:
                log.error("cannot restore spend from the ledger, paid requests are refused: %s", exc)
            self.restore_problem = f"cannot read the ledger to restore spend: {exc}"
            return 0
        self.budgets.restore(entries, now)
        self.spend_restored, self.restore_problem = True, None
        return len(entries)

    async def watch(self) -> None:
        """Poll the config directory; the kubelet swaps ``..data`` atomically: one read, one version.

        Nothing a poll runs into ends this loop: a step that fails is logged and runs again at the
        next poll, so a later config is still loaded, the ledger still probed and keys still fetched.
        """
        loop = asyncio.get_running_loop()
        self.watch_beat = loop.time()
        try:
            while True:
                await asyncio.sleep(self.settings.poll_interval)
                await self.try_load_async()  # never raises: a bad config is a counted rejection
                for step in (self._probe_ledger, self._refresh_unknown_keys, self._close_retired):
                    try:
                        await step()
                    except Exception:
                        log.exception("config watcher: %s failed; again at the next poll", step.__name__)
                self.watch_beat = loop.time()
        finally:
            self.watch_beat = -math.inf  # stopped (at shutdown, or cancelled by something else)

    def watch_problem(self) -> str | None:
        """Why the watcher is not polling (stalled), or None while it polls (or was never started)."""
        beat = self.watch_beat
        if beat is None:
            return None
        if beat == -math.inf:
            return "the config watcher stopped"
        late = asyncio.get_running_loop().time() - beat
        if late > max(WATCH_STALL_SECONDS, 30 * self.settings.poll_interval):
            return f"the config watcher has not completed a poll for {late:.0f} s"
        return None

    async def _probe_ledger(self) -> None:
        if not self.ledger.healthy:  # a full or read-only disk: paid requests wait for this
            await self.ledger.probe()
            self.metrics.ledger_healthy.set(1 if self.ledger.healthy else 0)
        if not self.spend_restored and self.ledger.healthy:  # a late config or a late volume
            self.restore_spend(datetime.now(UTC))

    async def _close_retired(self) -> None:
        if self._retired and self.drain.inflight == 0:
            retired, self._retired = self._retired, []
            for client in retired:
                await client.aclose()

    async def _refresh_unknown_keys(self) -> None:
        """A config sealed under a data key we lack (rotation): refetch keys, with back-off (fault 15)."""
        served = self.served
        if served is None or self.refresh_keys is None:
            return
        if "unknown_data_key" not in served.loaded.unusable.values():
            self._key_refresh_backoff = 1.0
            return
        now = time.monotonic()
        if now < self._next_key_refresh:
            return
        self._next_key_refresh = now + self._key_refresh_backoff  # before the call: a raise backs off too
        self._key_refresh_backoff = min(self._key_refresh_backoff * 2, 300.0)
        if not await self.refresh_keys() or not served.loaded.body:
            return
        try:  # in the verifier child: this process never holds ``cryptography``
            reopened = await reopen_keys(served.loaded, self.data_keys(), self.settings, datetime.now(UTC))
        except ConfigRejected as exc:
            log.warning("data keys fetched, provider keys not reopened: %s", exc.detail)
            return
        if self.served is served and reopened.connections.keys() != served.loaded.connections.keys():
            self.swap(reopened)

    async def aclose(self) -> None:
        try:
            while self._tasks:  # what finishing work spawns (a settle's ledger write, a release) waits too
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            clients = list(self.served.clients.values()) if self.served else []
            for client in clients + self._retired:
                await client.aclose()
            await self.ledger.aclose()
        finally:
            self.access_log.flush()  # the request log's last lines
