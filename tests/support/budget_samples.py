"""Sample budget policies, attributions and ledger entries for the budget and ledger tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluicegate_contract.ledger import Entry, EntryAttribution, EntryUsage, format_time
from sluicegate_contract.schema import Budget, LadderStep, Limit
from sluicegate_sidecar.attribution import Attribution, PodIdentity
from sluicegate_sidecar.ledger.writer import Ledger

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POD_LABELS = {"app": "search", "tier": "backend"}


def attribution(labels: Mapping[str, str] | None = None, **dimensions: str) -> Attribution:
    pod = PodIdentity(
        namespace="shop", workload="search", service_account="search", labels=labels or POD_LABELS
    )
    return Attribution(pod=pod, dimensions=dimensions, tags={})


def policy(
    name: str = "cap",
    amount: int = 1_000_000,
    window: str = "day",
    tz: str = "UTC",
    ladder: tuple[tuple[float, str], ...] = (),
    **fields: Any,
) -> Budget:
    limits = fields.pop("limits", (Limit(window=window, amount_micro_usd=amount, timezone=tz),))  # type: ignore[arg-type]
    steps = tuple(LadderStep(at_ppm=round(at * 1_000_000), action=action) for at, action in ladder)  # type: ignore[arg-type]
    return Budget(name=name, uid=f"uid-{name}", limits=limits, ladder=steps, **fields)


def entry(
    number: int,
    *,
    cost: int = 1_000,
    team: str | None = "search",
    scopes: tuple[str, ...] = ("cap",),
    time: datetime = NOON,
    model: str = "gpt-4o-mini",
    tags: Mapping[str, str] | None = None,
) -> Entry:
    return Entry(
        time=format_time(time),
        request_id=f"req-{number}",
        attribution=EntryAttribution(
            namespace="shop", workload="search", service_account="search", team=team, tags=dict(tags or {})
        ),
        connection="openai-main",
        provider="openai",
        model=model,
        requested_model=model,
        tier="standard",
        verdict="allow",
        usage=EntryUsage(input=100 + number, output=20, cached=0, cache_write=0),
        cost_micro_usd=cost,
        cost_basis="exact",
        status=200,
        budget_scopes=scopes,
    )


def write_ledger(directory: Path, entries: Sequence[Entry], max_file_bytes: int = 64 * 1024 * 1024) -> None:
    """Append ``entries`` one by one (so that rotation can happen between them), from sync code."""

    async def run() -> None:
        ledger = Ledger.open(directory, max_file_bytes=max_file_bytes, batch_delay=0)
        for item in entries:
            await ledger.append(item)
        await ledger.aclose()

    asyncio.run(run())
