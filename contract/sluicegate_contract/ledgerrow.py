"""What the fleet ledger needs from a shipped ledger entry: the columns PostgreSQL keeps beside the line.

A sidecar ships its JSONL lines unchanged (their hash chain must stay checkable); the authority
decodes this lenient view of each to fill the table's columns (``seq`` for idempotency, the time,
namespace and cost for SQL reports, version 2's resolution and decision for savings). Pure. The full
entry format is ``ledger``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec


class ShippedAttribution(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    namespace: str
    workload: str = ""
    team: str | None = None
    service: str | None = None
    feature: str | None = None
    user: str | None = None
    end_customer: str | None = None


class ShippedUsage(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    input: int
    output: int
    cached: int = 0
    cache_write: int = 0


class ShippedResolution(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    kind: str
    tier: str | None = None


class ShippedDecision(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    action: str


class ShippedEntry(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """The columns of one entry (unknown fields are ignored: the line itself is kept whole)."""

    seq: int
    time: str
    request_id: str
    attribution: ShippedAttribution
    connection: str | None = None
    provider: str | None = None
    model: str | None = None
    requested_model: str = ""
    tier: str | None = None
    verdict: str = ""
    usage: ShippedUsage | None = None
    cost_micro_usd: int = msgspec.field(name="costMicroUSD")
    cost_basis: str
    status: int | str
    budget_scopes: tuple[str, ...] = ()
    resolution: ShippedResolution | None = None  # version 2
    decision: ShippedDecision | None = None  # version 2
    prev_hash: str
    hash: str

    @property
    def instant(self) -> datetime:
        return datetime.fromisoformat(self.time).astimezone(UTC)


def decode_shipped(line: bytes) -> ShippedEntry:
    """Raises ``msgspec.DecodeError`` (a ``ValidationError`` for a wrong shape)."""
    return msgspec.json.decode(line, type=ShippedEntry)


# The table's columns filled from an entry, in the order ``row_values`` gives them.
COLUMNS = (
    "stream_id", "seq", "namespace", "time", "request_id", "workload", "team", "service", "feature",
    "user_name", "end_customer", "connection", "provider", "model", "requested_model", "tier",
    "verdict", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
    "cost_micro_usd", "cost_basis", "status", "budget_scopes", "resolution_kind", "resolution_tier",
    "decision_action", "prev_hash", "hash", "line",
)  # fmt: skip


def row_values(stream_id: str, entry: ShippedEntry, line: str) -> tuple[object, ...]:
    attr, usage, resolution = entry.attribution, entry.usage, entry.resolution
    return (
        stream_id, entry.seq, attr.namespace, entry.instant, entry.request_id, attr.workload,
        attr.team, attr.service, attr.feature, attr.user, attr.end_customer, entry.connection,
        entry.provider, entry.model, entry.requested_model, entry.tier, entry.verdict,
        usage.input if usage else None, usage.output if usage else None,
        usage.cached if usage else None, usage.cache_write if usage else None,
        entry.cost_micro_usd, entry.cost_basis, str(entry.status), list(entry.budget_scopes),
        resolution.kind if resolution else None, resolution.tier if resolution else None,
        entry.decision.action if entry.decision else None, entry.prev_hash, entry.hash, line,
    )  # fmt: skip
