"""The budget authority's HTTP endpoints (aiohttp): lease syncs and account reads, over the store.

Stateless over PostgreSQL: any number of replicas answer any sidecar. Standalone on loopback it
trusts its callers; hosted by the operator, callers send their projected ServiceAccount token and touch
only their own namespace's accounts (``callers.py``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import aiohttp.web
import msgspec

from sluicegate_contract.authority import (
    STATUS_PATH,
    SYNC_PATH,
    AccountsReply,
    AuthorityError,
    SyncReply,
    SyncRequest,
)

from .callers import TokenCallers
from .configs import ConfigSource
from .ledgerstore import MAX_ENTRIES, EntriesRefused, parse_entries, price_rows
from .store import Store, StoreUnavailable
from .terms import terms_for

log = logging.getLogger("sluicegate.authority")
MAX_BODY = 16 * 1024 * 1024  # room for MAX_ENTRIES ledger lines
MAX_ASKS = 512
_JSON = "application/json"


def _error(status: int, error: str, message: str) -> aiohttp.web.Response:
    body = msgspec.json.encode(AuthorityError(error=error, message=message))
    return aiohttp.web.Response(status=status, body=body, content_type=_JSON)


class AuthorityService:
    def __init__(self, store: Store, configs: ConfigSource, callers: TokenCallers | None = None) -> None:
        """``callers`` None: every caller is trusted (standalone, on loopback)."""
        self._store = store
        self._configs = configs
        self._priced: dict[str, int] = {}  # namespace → serial whose price book is recorded
        self._callers = callers

    async def _refused(self, request: aiohttp.web.Request, namespace: str) -> aiohttp.web.Response | None:
        """None when the caller may touch ``namespace``'s accounts."""
        if self._callers is None:
            return None
        verdict = await self._callers.check(request.headers.get("Authorization", ""))
        if verdict.namespace is None:
            return _error(
                verdict.status, "unauthorized" if verdict.status == 401 else "forbidden", verdict.message
            )
        if verdict.namespace != namespace:
            return _error(
                403, "forbidden", f"a token of namespace {verdict.namespace!r} opens only its accounts"
            )
        return None

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application(client_max_size=MAX_BODY)
        app.add_routes(
            [
                aiohttp.web.post(SYNC_PATH, self.sync),
                aiohttp.web.get(STATUS_PATH, self.accounts),
                aiohttp.web.get("/healthz", self.healthz),
            ]
        )
        return app

    async def healthz(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"ok": True, "namespaces": sorted(self._configs.configs)})

    async def sync(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        try:
            message = msgspec.json.decode(await request.read(), type=SyncRequest)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            return _error(400, "invalid_request", f"not a lease sync: {exc}")
        if (refused := await self._refused(request, message.namespace)) is not None:
            return refused
        if len(message.asks) > MAX_ASKS:
            return _error(400, "invalid_request", f"at most {MAX_ASKS} asks per sync")
        if message.namespace not in self._configs.configs:
            return _error(404, "unknown_namespace", f"no budgets are served for {message.namespace!r}")
        if len(message.entries) > MAX_ENTRIES:
            return _error(400, "invalid_request", f"at most {MAX_ENTRIES} ledger entries per sync")
        try:
            entries = parse_entries(message.namespace, [bytes(raw) for raw in message.entries])
        except EntriesRefused as exc:
            return _error(400, "invalid_request", f"ledger entries refused: {exc}")
        terms = terms_for(self._configs.configs, message.namespace)
        try:
            grants, shipped = await self._store.sync_shipping(
                message.namespace, message.sidecar_id, message.asks, terms, entries, message.process_id
            )
        except StoreUnavailable as exc:
            log.warning("lease sync failed, database unavailable: %s", exc)
            return _error(503, "database_unavailable", "the budget database is unavailable; retry")
        reply = SyncReply(
            leases=tuple(grants),
            entries_accepted=shipped[0] if shipped else 0,
            ledger_acked_seq=shipped[1] if shipped else None,
        )
        body = msgspec.json.encode(reply)
        return aiohttp.web.Response(body=body, content_type=_JSON)

    async def accounts(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        namespace = request.query.get("namespace", "")
        if not namespace:
            return _error(400, "invalid_request", "name the namespace: ?namespace=NAME")
        if (refused := await self._refused(request, namespace)) is not None:
            return refused
        try:
            found = await self._store.accounts(namespace)
        except StoreUnavailable:
            return _error(503, "database_unavailable", "the budget database is unavailable; retry")
        return aiohttp.web.Response(
            body=msgspec.json.encode(AccountsReply(accounts=tuple(found))), content_type=_JSON
        )

    async def record_prices(self) -> None:
        """Keep the price book of every config served (idempotent per serial)."""
        for namespace, config in self._configs.configs.items():
            if self._priced.get(namespace) == config.serial:
                continue
            try:
                await self._store.record_prices(namespace, config.serial, price_rows(config))
            except StoreUnavailable as exc:
                log.warning("price book of %s not recorded, database unavailable: %s", namespace, exc)
                continue
            self._priced[namespace] = config.serial

    async def maintain(self, interval: float) -> None:
        """Forever: pick up newer configs (and keep their price books), charge expired leases in full."""
        while True:
            try:
                self._configs.load(datetime.now(UTC))
            except OSError as exc:
                log.warning("configs not read: %s", exc)
            await self.record_prices()
            try:
                expired = await self._store.expire_due()
                if expired:
                    log.info("charged %s expired leases in full", expired)
            except StoreUnavailable as exc:
                log.warning("expiry sweep failed, database unavailable: %s", exc)
            await asyncio.sleep(interval)
