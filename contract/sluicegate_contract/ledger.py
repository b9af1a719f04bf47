"""Ledger entries: the JSONL line format and hash chaining. Pure.

The sidecar writes them (``ledger``), the reports read and verify them. Reads and writes no files;
no prompts or completions, ever.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

import msgspec

from .ladder import Verdict

GENESIS = "0" * 64
# anomalous: the upstream reported usage no correct provider reports (fault 30); ``usage`` holds the
# bounded figures charged, ``reportedUsage`` what was reported, ``anomaly`` why.
CostBasis = Literal["exact", "estimated", "unpriced", "reserved", "anomalous"]
# Version 2 adds ``resolution`` and ``decision``; a line without ``v`` is version 1 and reads as before.
ENTRY_VERSION = 2
ResolutionKind = Literal["auto", "tier", "pinned"]


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


class EntryResolution(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """How ``requestedModel`` resolved: ``auto`` (the classifier chose ``tier``, saying ``reason``), a
    ``tier:<name>``, or ``pinned`` (a connection's or provider's model, or a bare model name)."""

    kind: ResolutionKind
    tier: str | None = None
    reason: str | None = None


class EntryDecision(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """The budgets' verdict, structured: what acted, and what a Shadow policy would have done."""

    action: Verdict
    shadow: Verdict | None = None
    policy: str | None = None  # the policy whose DOWNGRADE or LIGHT_ONLY rerouted the request


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
    verdict: str  # as X-Sluicegate-Verdict showed it (``allow; shadow=BLOCK``); structured: ``decision``
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
    v: int | None = None  # ENTRY_VERSION; None: a version-1 line
    resolution: EntryResolution | None = None
    decision: EntryDecision | None = None


def format_time(instant: datetime) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-23T04:25:19.375Z`` (truncated, as ``isoformat``
    truncates; formatted by hand: twice per request, half ``isoformat``'s cost)."""
    if instant.tzinfo is not UTC:
        instant = instant.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (faster than an f-string)
        instant.year,
        instant.month,
        instant.day,
        instant.hour,
        instant.minute,
        instant.second,
        instant.microsecond // 1000,
    )


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# The canonical line is the entry as one JSON object of sorted keys, its optional members (those the
# mirrors below default to None: added after the first lines were written, so that those lines hash as
# they did) left out when None; its hash covers the same object without ``hash``. Sorted,
# that object is the members before ``"hash"`` and the members after: each half is encoded straight from
# the entry's values through a mirror struct, and the hashed text and the line are put together from the
# two (one encoding for the writer's ``chain_entry`` and the verifiers' ``entry_hash``/``entry_line``).


class _Before(msgspec.Struct, omit_defaults=True, rename="camel"):
    """An entry's members whose names sort before ``hash``."""

    attribution: EntryAttribution
    budget_scopes: tuple[str, ...]
    connection: str | None
    cost_basis: CostBasis
    cost_micro_usd: int = msgspec.field(name="costMicroUSD")
    anomaly: str | None = None
    decision: EntryDecision | None = None


class _After(msgspec.Struct, omit_defaults=True, rename="camel"):
    """An entry's members whose names sort after ``hash``."""

    model: str | None
    prev_hash: str
    provider: str | None
    request_id: str
    requested_model: str
    seq: int
    status: int | str
    tier: str | None
    time: str
    usage: EntryUsage | None
    verdict: str
    reported_usage: EntryReportedUsage | None = None
    resolution: EntryResolution | None = None
    v: int | None = None


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _halves(entry: Entry, seq: int, prev_hash: str) -> tuple[bytes, bytes]:
    """The members before and after ``"hash"`` of ``entry`` as number ``seq`` after ``prev_hash``."""
    before = _Before(
        entry.attribution,
        entry.budget_scopes,
        entry.connection,
        entry.cost_basis,
        entry.cost_micro_usd,
        entry.anomaly,
        entry.decision,
    )
    after = _After(
        entry.model,
        prev_hash,
        entry.provider,
        entry.request_id,
        entry.requested_model,
        seq,
        entry.status,
        entry.tier,
        entry.time,
        entry.usage,
        entry.verdict,
        entry.reported_usage,
        entry.resolution,
        entry.v,
    )
    return _encode_sorted(before)[1:-1], _encode_sorted(after)[1:-1]


def _digest(prev_hash: str, before: bytes, after: bytes) -> str:
    return hashlib.sha256(b"".join((prev_hash.encode(), b"{", before, b",", after, b"}"))).hexdigest()


def _line(before: bytes, digest: str, after: bytes) -> bytes:
    return b"".join((b"{", before, b',"hash":', _encode_sorted(digest), b",", after, b"}\n"))


def entry_hash(entry: Entry) -> str:
    """SHA-256 hex of the previous hash followed by the canonical JSON of the entry without ``hash``."""
    return _digest(entry.prev_hash, *_halves(entry, entry.seq, entry.prev_hash))


def entry_line(entry: Entry) -> bytes:
    """The canonical line of an entry as it stands (its ``hash`` as it holds it)."""
    before, after = _halves(entry, entry.seq, entry.prev_hash)
    return _line(before, entry.hash, after)


def chain_entry(entry: Entry, seq: int, prev_hash: str) -> tuple[str, bytes]:
    """The hash and the line of ``entry`` as number ``seq`` after ``prev_hash``, in one encoding pass."""
    before, after = _halves(entry, seq, prev_hash)
    digest = _digest(prev_hash, before, after)
    return digest, _line(before, digest, after)


def decode_entry(line: bytes) -> Entry:
    return msgspec.json.decode(line, type=Entry)
