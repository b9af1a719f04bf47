"""The operator's own watches of its CRs and of Secrets, in place of kopf's (issue 19).

kopf hands every object of a kind it watches to a worker of its own (a task and a queue holding the whole
body, and its cause detection, for every event) before any handler filter runs: at a (re)start that was
every CR and every Secret of the cluster at once, config Secrets of ~13 kB included, in the loop the
webhook, the key service and the liveness probe share. These watches list in pages, parse each event,
keep what ``matters(namespace, name)`` accepts as a WatchEvent and drop the rest on the spot, unlogged; a
Secret's event never keeps its data.

A (re)start's listing is delivered with ``type`` None, as kopf did; a watch that ends is resumed from the
last resourceVersion seen, and the listing starts over when the API says that version is gone (410).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .kube import Kube, WatchGone

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str | None  # ADDED, MODIFIED, DELETED; None: found by a listing (a start, or a relist)
    plural: str  # "secrets", or a Sluicegate CR's plural
    namespace: str
    name: str
    version: str | None
    labels: Mapping[str, str]
    body: Mapping[str, Any] | None = field(default=None, repr=False)  # None for a Secret: no data kept


@dataclass(frozen=True, slots=True)
class WatchSettings:
    page: int = 500  # objects per page of a listing
    server_timeout: int = 300  # seconds the API server keeps one watch request open
    retry_delay: float = 1.0  # after an API error, before listing or watching again


def watch_event(plural: str, event_type: str | None, obj: Mapping[str, Any]) -> WatchEvent | None:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    version = meta.get("resourceVersion")
    labels = meta.get("labels")
    return WatchEvent(
        event_type,
        plural,
        namespace,
        name,
        None if version is None else str(version),
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {},
        None if plural == "secrets" else obj,
    )


class ObjectWatch:
    """Lists, then watches, ``plural`` in ``namespace`` (None: every namespace); ``run`` until cancelled."""

    def __init__(
        self,
        kube: Kube,
        plural: str,
        namespace: str | None,
        matters: Callable[[str, str], bool],
        deliver: Callable[[WatchEvent], None],
        settings: WatchSettings,
    ) -> None:
        self._kube, self._plural, self._namespace, self._settings = kube, plural, namespace, settings
        self._matters, self._deliver = matters, deliver
        self.listed = 0  # pages listed (tests, diagnostics)
        self._version: str | None = None  # resumed from after an interruption; None: list first

    async def run(self) -> None:
        while True:
            try:
                if self._version is None:
                    self._version = await self._list()
                await self._watch()
            except WatchGone:
                self._version = None  # too old to resume from: list again
            except TimeoutError:
                pass  # a watch request that outlived its client timeout: resume where it was
            except Exception as exc:  # the API server restarting, a network error: try again shortly
                logger.warning("watching %s failed (%s); retrying", self._plural, exc)
                await asyncio.sleep(self._settings.retry_delay)

    def _offer(self, event_type: str | None, obj: Any) -> None:
        if not isinstance(obj, Mapping):
            return
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            return
        namespace, name = meta.get("namespace"), meta.get("name")
        if isinstance(namespace, str) and isinstance(name, str) and self._matters(namespace, name):
            event = watch_event(self._plural, event_type, obj)
            if event is not None:
                self._deliver(event)

    async def _list(self) -> str:
        token = ""
        while True:
            page = await self._kube.list_page(
                self._plural, self._namespace, limit=self._settings.page, token=token
            )
            self.listed += 1
            for item in page.get("items") or ():
                self._offer(None, item)
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                return str(meta.get("resourceVersion") or "")

    async def _watch(self) -> None:
        """Watch from the last version seen until the API server ends the request; each event's version is
        remembered as it arrives, so an interruption (a handler's error included) resumes after it."""
        lines = JsonLines()
        async for chunk in self._kube.watch(
            self._plural, self._namespace, self._version or "", timeout_seconds=self._settings.server_timeout
        ):
            for event in lines.feed(chunk):
                obj = event.get("object")
                if event.get("type") == "ERROR":
                    code = obj.get("code") if isinstance(obj, Mapping) else None
                    if code == 410:
                        raise WatchGone()
                    raise WatchError(f"the watch of {self._plural} failed: {code}")
                if isinstance(obj, Mapping):
                    seen = (obj.get("metadata") or {}).get("resourceVersion")
                    self._version = str(seen) if seen else self._version
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    self._offer(str(event["type"]), obj)


class WatchError(Exception):
    """The API server ended a watch with an error other than 410."""


@dataclass(slots=True)
class JsonLines:
    """Splits a watch stream's chunks into its events, one JSON object a line."""

    _rest: bytes = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        events = [json.loads(line) for line in lines if line.strip()]
        return [event for event in events if isinstance(event, dict)]
