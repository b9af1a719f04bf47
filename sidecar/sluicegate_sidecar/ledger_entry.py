"""Ledger entries: the JSONL line format, hash chaining, and conversions to and from sidecar values. Pure.

Reads and writes no files (``ledger`` does); no prompts or completions, ever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from .attribution import Attribution
from .budget import Charge
from .providers.base import ReportedUsage, Usage

GENESIS = "0" * 64
# anomalous: the upstream reported usage no correct provider reports (FAULTS 30); ``usage`` holds the
# bounded figures charged, ``reportedUsage`` what was reported, ``anomaly`` why.
CostBasis = Literal["exact", "estimated", "unpriced", "reserved", "anomalous"]
# Fields a line carries only when set, so that lines written before they existed hash as they did.
_OPTIONAL = ("reportedUsage", "anomaly")


class EntryAttribution(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    namespace: str
    workload: str = ""
    service_account: str = ""
    team: str | None = None
    service: str | None = None
    feature: str | None = None
    user: str | None = None
    end_customer: str | None = None
    tags: dict[str, str] = {}


class EntryUsage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    input: int
    output: int
    cached: int = 0
    cache_write: int = 0


class EntryReportedUsage(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True
):
    """What the upstream reported for an ``anomalous`` entry: None where it sent no integer."""

    input: int | None
    output: int | None
    cached: int | None = 0
    cache_write: int | None = 0


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """One settled request. ``seq``, ``prev_hash`` and ``hash`` are set by the ledger on append."""

    time: str  # RFC 3339, UTC, milliseconds: format_time()
    request_id: str
    attribution: EntryAttribution
    connection: str | None
    provider: str | None
    model: str | None
    requested_model: str
    tier: str | None
    verdict: str
    usage: EntryUsage | None
    cost_micro_usd: int = msgspec.field(name="costMicroUSD")
    cost_basis: CostBasis
    status: int | str  # HTTP status, or "partial" / "client_disconnect" / "upstream_error"
    budget_scopes: tuple[str, ...] = ()
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""
    reported_usage: EntryReportedUsage | None = None
    anomaly: str | None = None


def format_time(instant: datetime) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-23T04:25:19.375Z``."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def entry_attribution(attribution: Attribution) -> EntryAttribution:
    dims = attribution.dimensions
    pod = attribution.pod
    return EntryAttribution(
        namespace=pod.namespace,
        workload=pod.workload,
        service_account=pod.service_account,
        team=dims.get("team"),
        service=dims.get("service"),
        feature=dims.get("feature"),
        user=dims.get("user"),
        end_customer=dims.get("endCustomer"),
        tags=dict(attribution.tags),
    )


def entry_usage(usage: Usage | None) -> EntryUsage | None:
    if usage is None:
        return None
    return EntryUsage(
        input=usage.input_tokens,
        output=usage.output_tokens,
        cached=usage.cached_input_tokens,
        cache_write=usage.cache_write_tokens,
    )


def entry_reported_usage(reported: ReportedUsage | None) -> EntryReportedUsage | None:
    if reported is None:
        return None
    return EntryReportedUsage(
        input=reported.input_tokens,
        output=reported.output_tokens,
        cached=reported.cached_input_tokens,
        cache_write=reported.cache_write_tokens,
    )


def _canonical(fields: dict[str, Any]) -> bytes:
    return msgspec.json.encode(fields, order="sorted")


def _fields(entry: Entry) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(entry)
    for name in _OPTIONAL:
        if fields.get(name) is None:
            del fields[name]
    return fields


def entry_hash(entry: Entry) -> str:
    """SHA-256 hex of the previous hash followed by the canonical JSON of the entry without ``hash``."""
    fields = _fields(entry)
    del fields["hash"]
    return hashlib.sha256(entry.prev_hash.encode() + _canonical(fields)).hexdigest()


def entry_line(entry: Entry) -> bytes:
    return _canonical(_fields(entry)) + b"\n"


def chain_entry(entry: Entry, seq: int, prev_hash: str) -> tuple[str, bytes]:
    """The hash and the line of ``entry`` as number ``seq`` after ``prev_hash`` (one encoding pass)."""
    fields = _fields(entry)
    fields["seq"], fields["prevHash"] = seq, prev_hash
    del fields["hash"]
    digest = hashlib.sha256(prev_hash.encode() + _canonical(fields)).hexdigest()
    fields["hash"] = digest
    return digest, _canonical(fields) + b"\n"


def decode_entry(line: bytes) -> Entry:
    return msgspec.json.decode(line, type=Entry)


def charges(entries: Iterable[Entry]) -> Iterator[Charge]:
    """What each entry cost and to which policies, for ``BudgetBook.restore``."""
    for entry in entries:
        attr = entry.attribution
        dims = {
            "team": attr.team,
            "service": attr.service,
            "feature": attr.feature,
            "user": attr.user,
            "endCustomer": attr.end_customer,
        }
        yield Charge(
            time=parse_time(entry.time),
            policies=entry.budget_scopes,
            dimensions={k: v for k, v in dims.items() if v},
            cost_micro_usd=entry.cost_micro_usd,
        )
