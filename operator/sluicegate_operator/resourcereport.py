"""What render learned about one resource, for its status conditions and Events. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from sluicegate_contract.schema import Model

from .crparse import Meta


@dataclass(frozen=True, slots=True)
class ResourceReport:
    """What render learned about one resource, for its status conditions."""

    kind: str
    name: str
    ready: bool
    reason: str
    message: str
    key_fingerprint: str | None = None
    models: tuple[Model, ...] = ()
    candidates: tuple[tuple[str, str, bool], ...] = ()
    not_ready: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # problems that do not stop it serving (e.g. a retired model)


def failed_report(meta: Meta, reason: str, message: str) -> ResourceReport:
    return ResourceReport(kind=meta.kind, name=meta.name, ready=False, reason=reason, message=message)
