"""Fleet mode's I/O: syncs the sidecar's lease book with the budget authority (``--budget-authority``).

A background loop syncs every refresh period (reports, renewals, top-ups ahead of need); a request
whose leases hold too little syncs at once (one sync at a time; waiting requests share it). The
hot path reads the book only. On SIGTERM ``close`` returns every lease not in flight.

With a lease journal (``journalfile``) the client records each lease there and keeps its totals
(settled, reservations open) up to date, and on start reports the leases an earlier process on the
same volume left behind: each gets a final report of what the journal shows it cost (retried with
every sync until the authority has seen it closed), instead of staying charged in full. Offline
leases (``failMode: static``) are journaled too, marked as such, and reported as offline leases
after a restart.

Over aiohttp, which the sidecar serves its upstream calls with anyway: httpx (with httpcore, anyio
and h11) would add ~5.5 MiB to every fleet sidecar and ~0.5 ms of Python to every sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import msgspec

from sluicegate_contract.authority import SYNC_PATH, AuthorityError, SyncReply, SyncRequest

from .fleetroom import FleetRefusal
from .journalfile import LeaseJournal
from .ladder import ScopeKey
from .leasejournal import adopt
from .leases import LeaseBook, LeaseKey, LeaseSettings
from .ledgership import LedgerShipper
from .metrics import Metrics

log = logging.getLogger("sluicegate.sidecar")
SIDECAR_ID_FILE = "sidecar-id"
COVER_SECONDS = 3.0  # the longest a request waits for a synchronous top-up
SHIP_AGAIN_SECONDS = 0.05  # a full batch shipped and acknowledged, more on the volume: the next sync
SHIP_PAUSE_SECONDS = 60.0  # after the authority refused a sync for its ledger entries: syncs without


def sidecar_id(ledger_dir: Path) -> str:
    """This sidecar's id, kept beside its ledger: the same after a restart on the same volume."""
    path = ledger_dir / SIDECAR_ID_FILE
    try:
        found = path.read_text(encoding="utf-8").strip()
        if found:
            return found
    except OSError:
        pass
    new = str(uuid.uuid4())
    try:
        ledger_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new + "\n", encoding="utf-8")
    except OSError as exc:  # an unwritable volume: a fresh id each start (its old leases expire)
        log.warning("cannot keep the sidecar id in %s: %s", path, exc)
    return new


def _said(body: bytes) -> str:
    """What an error reply of the authority says (its ``AuthorityError``), shortened for a log line."""
    try:
        found = msgspec.json.decode(body, type=AuthorityError)
    except msgspec.DecodeError:
        return "(not an authority error)"
    return f"{found.error}: {found.message}"[:300]


class AuthorityClient:
    """Implements ``budget.FleetRoom`` over a ``LeaseBook``, syncing it with the authority. A scope's
    lease key is its ``ScopeKey`` less the window's start (``key[:3]``): the authority keeps windows."""

    def __init__(
        self,
        urls: Sequence[str],
        sidecar: str,
        namespace: Callable[[], str | None],
        settings: LeaseSettings | None = None,
        *,
        metrics: Metrics | None = None,
        timeout: float = 2.0,
        shipper: LedgerShipper | None = None,
        verify: ssl.SSLContext | bool = True,
        token_file: Path | None = None,
        journal: LeaseJournal | None = None,
    ) -> None:
        """``journal``: recovered here (an earlier process's leases are reported at the first syncs),
        then kept up to date."""
        self.metrics = metrics
        self._token_file = token_file
        self._verify = verify
        self.urls = [url.rstrip("/") for url in urls]
        self.sidecar = sidecar
        self.process = str(uuid.uuid4())  # this process's own (``SyncRequest.process_id``)
        self.namespace = namespace
        self.book = LeaseBook(settings or LeaseSettings())
        self._timeout = timeout
        self.shipper = shipper  # ships the ledger's entries with the syncs (fleet ledger)
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._preferred = 0
        # Syncs that read the book (numbered as they do), and the number of the last one completed: a
        # request waiting for room knows whether a sync that read its need has answered since it asked
        # (a sync already under way when it asked carries nothing for it).
        self._reads = 0
        self._carried = 0
        self._synced: asyncio.Event | None = None  # set (and replaced) when a sync completes
        self._answered: int | None = None  # the status of the last non-200 answer of ``_post``
        self._ship_after = 0.0  # monotonic: no ledger entries ride on syncs before this
        self.journal = journal
        self._last_keys: tuple[tuple[ScopeKey, ...], tuple[LeaseKey, ...]] = ((), ())
        if journal is not None:
            owed = journal.recover()
            adopt(self.book, owed, journal.state.offline)

    # -- budget.FleetRoom -------------------------------------------------------------------

    # Every request's looks find its scope once and read the lease in place while the last sync was
    # answered; with the authority away they go through ``LeaseBook.room`` (it may open a fall-back).

    def room(self, key: ScopeKey) -> int:
        return self.book.room(key[:3], time.monotonic())

    def fleet_room(self, key: ScopeKey) -> int | None:
        return self.book.fleet_room(key[:3], time.monotonic())

    def standing(self, key: ScopeKey) -> tuple[int | None, bool]:
        book = self.book
        if book.unavailable:  # the fall-back leases may open: the two looks, in their order
            return self.fleet_room(key), self.shortfall(key, 0) == "kill_switch"
        lease_key = key[:3]
        state = book.scopes.get(lease_key)
        if state is None:
            return None, False
        if state.refusal == "kill_switch":
            return (None if state.account is None else 0), True
        if state.account is None:
            return None, False
        room = book.state_room(lease_key, state, time.monotonic())
        return room + state.unleased, False

    def shortfall(self, key: ScopeKey, amount: int) -> FleetRefusal | None:
        found = self.book.shortfall(key[:3], amount, time.monotonic())
        if found == "pending":  # no answer from the authority in time: fail closed
            return "budget_authority_unavailable"
        return found

    def take(self, keys: tuple[ScopeKey, ...], amount: int) -> tuple[str, ...] | None:
        mono = time.monotonic()
        lease_keys = tuple(key[:3] for key in keys)
        self.book.note_demand(lease_keys, amount, mono)
        taken = self.book.take(lease_keys, amount, mono)
        if taken and self.journal is not None:
            self._journal_offline(taken)
            self.journal.reserve(taken, amount)  # before the request can reach a provider
        return taken

    def try_take(self, keys: tuple[ScopeKey, ...], amount: int) -> tuple[str, ...] | None:
        last = self._last_keys  # the request's scopes are the same tuple request after request
        if last[0] is keys:
            lease_keys = last[1]
        else:
            lease_keys = tuple(key[:3] for key in keys)
            self._last_keys = (keys, lease_keys)
        taken = self.book.take_now(lease_keys, amount, time.monotonic())
        if taken and self.journal is not None:
            self.journal.reserve(taken, amount)  # before the request can reach a provider
        return taken

    def put(self, leases: tuple[str, ...], amount: int, actual: int) -> None:
        self.book.put(leases, amount, actual)

    def recorded(self, leases: tuple[str, ...], amount: int, actual: int) -> None:
        if self.journal is not None:
            self.journal.settle(leases, amount, actual)
        self.book.recorded(leases, amount, actual)

    def worth_waiting(self, keys: tuple[ScopeKey, ...], need: int) -> bool:
        mono = time.monotonic()
        return self.book.worth_waiting(tuple(key[:3] for key in keys), need, mono)

    async def wait(self, keys: tuple[ScopeKey, ...], want: int, need: int, seconds: float) -> None:
        self.book.need(tuple(key[:3] for key in keys), want, time.monotonic(), need)
        if self._synced is None:
            self._synced = asyncio.Event()
        event = self._synced
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(seconds, self.book.settings.refresh_seconds * 2)):
                await event.wait()

    async def cover(self, keys: tuple[ScopeKey, ...], want: int, need: int) -> None:
        lease_keys = tuple(key[:3] for key in keys)
        mono = time.monotonic()
        if all(self.book.room(key, mono) >= want for key in lease_keys):
            return  # the hot path: no network
        if any(self.book.shortfall(key, need, mono) == "kill_switch" for key in lease_keys):
            return
        self.book.need(lease_keys, want, mono, need)
        asked = self._reads  # every sync numbered above this reads the book after our need
        try:
            async with asyncio.timeout(COVER_SECONDS):
                async with self._lock:
                    if self._carried > asked:
                        return  # a sync that carried our need has answered
                    await self._sync_locked()
        except TimeoutError:
            self.book.failed()
        self._observe()  # the request about to be refused for it sees the authority down in the metrics

    # -- syncing ----------------------------------------------------------------------------

    async def sync(self) -> bool:
        async with self._lock:
            done = await self._sync_locked()
        self._observe()
        return done

    def _observe(self) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        metrics.authority_up.set(0 if self.book.unavailable else 1)
        metrics.leases_held.set(len(self.book.held))
        for (policy, window), room in self.book.rooms(time.monotonic()).items():
            metrics.lease_room.labels(policy, window).set(room / 1_000_000)

    async def _sync_locked(self) -> bool:
        namespace = self.namespace()
        if namespace is None:
            return False
        sent_at = time.monotonic()
        self._reads += 1
        reading = self._reads
        asks = self.book.asks(sent_at)
        # Read off the event loop (up to a batch of lines); the lock keeps it to one reader at a time.
        shipping = self.shipper is not None and sent_at >= self._ship_after
        entries = await asyncio.to_thread(self.shipper.batch) if self.shipper and shipping else []
        if not asks and not entries:
            self._carried = reading
            return True
        message = SyncRequest(
            namespace=namespace,
            sidecar_id=self.sidecar,
            process_id=self.process,
            asks=asks,
            entries=tuple(msgspec.Raw(line) for line in entries),
        )
        reply = await self._post(msgspec.json.encode(message))
        if reply is None and entries and self._answered not in (None, 503):
            reply = await self._without_entries(message, len(entries))
        if reply is None:
            self.book.failed()
            return False
        before = set(self.book.held)
        self.book.apply(reply, sent_at)
        if self.journal is not None:
            self._journal_leases(before)
        if self.shipper is not None and reply.ledger_acked_seq is not None:
            await self.shipper.acknowledge(reply.ledger_acked_seq)
        self._carried = reading
        event, self._synced = self._synced, None
        if event is not None:
            event.set()
        return True

    async def _without_entries(self, message: SyncRequest, count: int) -> SyncReply | None:
        """The authority answered a sync carrying ledger entries with an error (not "unavailable"):
        one it cannot take must not hold up the leases. Send the asks alone; ship nothing for a while
        (the lines stay on the volume, unacknowledged, and go again after the pause)."""
        log.error(
            "the budget authority refused a sync carrying %s ledger entries (status %s): the leases go"
            " on without them; shipping paused for %.0f s",
            count, self._answered, SHIP_PAUSE_SECONDS,
        )  # fmt: skip
        self._ship_after = time.monotonic() + SHIP_PAUSE_SECONDS
        if not message.asks:
            return None
        alone = SyncRequest(
            namespace=message.namespace,
            sidecar_id=message.sidecar_id,
            process_id=message.process_id,
            asks=message.asks,
        )
        return await self._post(msgspec.json.encode(alone))

    def _journal_offline(self, lease_ids: tuple[str, ...]) -> None:
        """Journal an offline lease (``failMode: static``) before its first reservation: the book
        opens it on the request path, without a sync, and a restart must still report its spend."""
        journal = self.journal
        assert journal is not None
        for lease_id in lease_ids:
            lease = self.book.held.get(lease_id)
            if lease is not None and lease.offline and lease_id not in journal.state.leases:
                journal.lease(lease_id, lease.key, offline=True)

    def _journal_leases(self, before: set[str]) -> None:
        """Journal the leases a sync opened (before anything is reserved on them) and those the
        authority has now seen closed (nothing more is owed on them)."""
        journal = self.journal
        assert journal is not None
        held = self.book.held
        for lease_id, lease in held.items():
            if lease_id not in before:
                journal.lease(lease_id, lease.key)
        for lease_id in before.difference(held):
            journal.done(lease_id)

    async def _post(self, body: bytes) -> SyncReply | None:
        """POST to the preferred authority, then to each other one; None when none answered."""
        if self._session is None:  # made on the loop it serves
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._verify),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        headers = {"content-type": "application/json", **self._authorization()}
        self._answered = None
        count = len(self.urls)
        for step in range(count):
            index = (self._preferred + step) % count
            try:
                async with self._session.post(
                    self.urls[index] + SYNC_PATH, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status, content = response.status, await response.read()
                if status == 200:
                    self._preferred = index
                    return msgspec.json.decode(content, type=SyncReply)
                self._answered = status
                log.warning("budget authority %s answered %s: %s", self.urls[index], status, _said(content))
            except (aiohttp.ClientError, msgspec.DecodeError, OSError) as exc:  # OSError: timeouts too
                log.warning("budget authority %s unreachable: %s", self.urls[index], type(exc).__name__)
        return None

    @property
    def _shipping(self) -> bool:
        return self.shipper is not None and self.shipper.behind

    def _authorization(self) -> dict[str, str]:
        """The projected ServiceAccount token (re-read: the kubelet rotates it); none standalone."""
        if self._token_file is None:
            return {}
        try:
            token = self._token_file.read_text(encoding="utf-8").strip()
        except OSError:
            return {}
        return {"authorization": f"Bearer {token}"} if token else {}

    async def run(self) -> None:
        """Forever: one sync per refresh period; sooner (``SHIP_AGAIN_SECONDS``) while the ledger's
        shipping is behind by more than a batch and the authority acknowledges what it gets: one
        batch (``ledgership.BATCH_MAX`` lines) a period would leave a sidecar serving more requests
        than that ever further behind, its acknowledged files never pruned (a full volume then
        refuses paid requests)."""
        period = self.book.settings.refresh_seconds
        while True:
            acked = self.shipper.acked if self.shipper is not None else 0
            again = False
            try:
                synced = await self.sync()
                shipper = self.shipper
                again = synced and shipper is not None and shipper.acked > acked and shipper.filled
            except Exception:  # a bug must not end the loop: leases would lapse and requests get 503
                log.exception("lease sync failed")
                self.book.failed()
            await asyncio.sleep(SHIP_AGAIN_SECONDS if again else period)

    async def close(self, patience: float = 5.0) -> None:
        """Ship the rest of the ledger and return every lease (nothing is in flight any more at
        shutdown), then close the client."""
        self.book.draining = True
        deadline = time.monotonic() + patience
        while (self.book.outstanding() or self._shipping) and time.monotonic() < deadline:
            if not await self.sync():
                await asyncio.sleep(0.2)
        if self.book.outstanding():
            log.warning("shutting down with leases the authority has not closed; they expire in full")
        if self._shipping:
            log.warning("shutting down with ledger entries the authority has not acknowledged")
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.journal is not None:
            self.journal.close()
