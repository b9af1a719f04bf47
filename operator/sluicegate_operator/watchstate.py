"""What the operator remembers between watch events: its own writes, which Secrets are referenced, the
last version seen of each object that matters, and the BudgetPolicies per namespace.

Maintained by the event handlers as events arrive; nothing waits for it to be complete (kopf's index
blocked every handler until all of it was listed: issue 19). Pure: no kopf, no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

ObjectKey = tuple[str, str, str]  # (plural, namespace, name)
KEEP_VERSIONS = 4


@dataclass(slots=True)
class WriteLog:
    """The resourceVersions the operator's own writes produced, so their watch events start nothing."""

    _versions: dict[ObjectKey, list[str]] = field(default_factory=dict)

    def record(self, key: ObjectKey, version: str | None) -> None:
        if not version:
            return
        kept = self._versions.setdefault(key, [])
        kept.append(version)
        del kept[:-KEEP_VERSIONS]

    def is_own(self, key: ObjectKey, version: str | None) -> bool:
        return bool(version) and version in self._versions.get(key, ())

    def forget(self, key: ObjectKey) -> None:
        self._versions.pop(key, None)

    def forget_namespace(self, namespace: str) -> None:
        for key in [k for k in self._versions if k[1] == namespace]:
            del self._versions[key]


class Change(Enum):
    NONE = "none"  # seen before at this version: nothing to do
    NEW = "new"  # first seen in a listing (a start or restart): background work
    CHANGED = "changed"  # an edit, or a version that moved while the watch was down: urgent


def _secret_ref(body: Mapping[str, Any]) -> str | None:
    ref = (body.get("spec") or {}).get("apiKeySecretRef")
    if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
        return str(ref["name"])
    return None


@dataclass(slots=True)
class WatchIndex:
    """Per-object facts gathered from watch events, bounded by the number of objects that matter."""

    _versions: dict[ObjectKey, str] = field(default_factory=dict)  # as last seen on the watch
    _read: dict[ObjectKey, str] = field(default_factory=dict)  # as last read by a reconcile
    _resources: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # ns → {(plural, name)}
    _secret_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, connection) → Secret
    _referenced: dict[tuple[str, str], int] = field(default_factory=dict)  # (ns, Secret) → how many
    _policies: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # ns → name → body

    def observe(self, key: ObjectKey, version: str | None, event_type: str | None) -> Change:
        """Record an event about an object that matters; ``event_type`` None is a listing's replay."""
        if event_type == "DELETED":
            self._versions.pop(key, None)
            self._read.pop(key, None)
            return Change.CHANGED
        previous = self._versions.get(key)
        self._versions[key] = version or ""
        if event_type is not None:
            return Change.CHANGED
        if previous is None:
            return Change.NEW
        return Change.NONE if previous == (version or "") else Change.CHANGED

    def note_read(self, key: ObjectKey, version: str | None) -> None:
        """A reconcile read the object at this version: an event about that version needs no other."""
        self._read[key] = version or ""

    def was_read(self, key: ObjectKey, version: str | None) -> bool:
        return self._read.get(key) == (version or "")

    def note_resource(self, plural: str, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """A Sluicegate CR as it now is (None: deleted)."""
        owned = self._resources.setdefault(namespace, set())
        if plural == "providerconnections":
            self._unreference(namespace, name)
        if plural == "budgetpolicies":
            book = self._policies.setdefault(namespace, {})
            if body is None:
                book.pop(name, None)
                if not book:
                    del self._policies[namespace]
            else:
                book[name] = dict(body)
        if body is None:
            owned.discard((plural, name))
            if not owned:
                del self._resources[namespace]
            return
        owned.add((plural, name))
        if plural == "providerconnections" and (secret := _secret_ref(body)) is not None:
            self._secret_of[(namespace, name)] = secret
            self._referenced[(namespace, secret)] = self._referenced.get((namespace, secret), 0) + 1

    def _unreference(self, namespace: str, connection: str) -> None:
        secret = self._secret_of.pop((namespace, connection), None)
        if secret is None:
            return
        left = self._referenced.get((namespace, secret), 0) - 1
        if left > 0:
            self._referenced[(namespace, secret)] = left
        else:
            self._referenced.pop((namespace, secret), None)

    def is_referenced(self, namespace: str, secret: str) -> bool:
        return (namespace, secret) in self._referenced

    def has_resources(self, namespace: str) -> bool:
        return namespace in self._resources

    @property
    def namespaces(self) -> list[str]:
        """Namespaces holding Sluicegate resources, in a stable order."""
        return sorted(self._resources)

    def policy_namespaces(self) -> list[str]:
        return sorted(self._policies)

    def policies(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._policies.get(namespace, {}).values())

    def forget_namespace(self, namespace: str) -> None:
        for versions in (self._versions, self._read):
            for key in [k for k in versions if k[1] == namespace]:
                del versions[key]
        for plural, name in list(self._resources.get(namespace, ())):
            self.note_resource(plural, namespace, name, None)
