"""Writes the synthetic ledgers in this folder (run from the repo root; the committed files are its output).

Figures are chosen so the expected answers can be computed by hand from catalog prices
(gpt-4o $2.50/$10 per M tokens, cached $1.25; gpt-4o-mini $0.15/$0.60, cached $0.075;
claude-haiku-4-5 $1/$5); see the tests for the arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from sluicegate_contract.ledger import (
    GENESIS,
    Entry,
    EntryAttribution,
    EntryUsage,
    entry_hash,
    entry_line,
)

HERE = Path(__file__).parent


def entry(when: str, rid: str, team: str, requested: str, conn: str, provider: str, model: str,
          usage: tuple[int, int, int] | None, cost: int, basis: str = "exact", verdict: str = "allow",
          tier: str | None = None) -> Entry:  # fmt: skip
    used = None if usage is None else EntryUsage(input=usage[0], output=usage[1], cached=usage[2])
    return Entry(
        time=when, request_id=rid,
        attribution=EntryAttribution(namespace="shop", workload=f"{team}-api", team=team, service=f"{team}-api"),
        connection=conn, provider=provider, model=model, requested_model=requested, tier=tier,
        verdict=verdict, usage=used, cost_micro_usd=cost, cost_basis=basis, status=200,  # type: ignore[arg-type]
    )  # fmt: skip


def write(folder: str, entries: list[Entry]) -> None:
    target = HERE / folder
    target.mkdir(exist_ok=True)
    prev, lines = GENESIS, []
    for seq, item in enumerate(entries, 1):
        linked = msgspec.structs.replace(item, seq=seq, prev_hash=prev, hash="")
        prev = entry_hash(linked)
        lines.append(entry_line(msgspec.structs.replace(linked, hash=prev)))
    (target / "ledger-000001.jsonl").write_bytes(b"".join(lines))


def main() -> None:
    d1, d2 = "2026-03-02T10:00:00.000Z", "2026-03-03T10:00:00.000Z"
    write("savings-ledger", [
        entry(d1, "s1", "search", "tier:premium", "oai", "openai", "gpt-4o-mini", (200_000, 50_000, 0), 60_000,
              verdict="DOWNGRADE", tier="light"),
        entry(d1, "s2", "search", "auto", "oai", "openai", "gpt-4o-mini", (200_000, 50_000, 0), 60_000, tier="light"),
        entry(d1, "s3", "chat", "openai/gpt-4o", "oai", "openai", "gpt-4o", (200_000, 50_000, 0), 1_000_000),
        entry(d1, "s4", "chat", "tier:standard", "oai", "openai", "gpt-4o-mini", (100_000, 20_000, 40_000), 24_000,
              verdict="LIGHT_ONLY; shadow=BLOCK", tier="light"),
        entry(d1, "s5", "chat", "auto", "oai", "openai", "gpt-4o-mini", (100_000, 10_000, 0), 21_000,
              basis="estimated", tier="standard"),
        entry(d1, "s6", "search", "mock/echo", "mock", "mock", "echo", (1_000, 100, 0), 0, basis="unpriced"),
        entry(d2, "s7", "chat", "claude/claude-haiku-4-5", "claude", "anthropic", "claude-haiku-4-5",
              (100_000, 10_000, 0), 150_000),
    ])  # fmt: skip
    write("recon-ledger", [
        entry(d1, "r1", "chat", "openai/gpt-4o", "oai", "openai", "gpt-4o", (200_000, 50_000, 0), 1_000_000),
        entry(d1, "r2", "search", "auto", "oai", "openai", "gpt-4o-mini", (200_000, 50_000, 0), 60_000),
        entry(d1, "r3", "search", "auto", "oai", "openai", "gpt-4o-mini", (10_000, 1_000, 0), 2_100,
              basis="estimated"),
        entry(d2, "r4", "chat", "openai/gpt-4o", "oai", "openai", "gpt-4o", (100_000, 10_000, 0), 350_000),
        entry(d2, "r5", "chat", "openai/gpt-4o", "oai", "openai", "gpt-4o", (100_000, 12_000, 0), 0,
              basis="unpriced"),
        entry(d2, "r6", "search", "auto", "oai", "openai", "gpt-4o-mini", (200_000, 50_000, 0), 60_000),
        entry(d2, "r7", "chat", "claude/claude-haiku-4-5", "claude", "anthropic", "claude-haiku-4-5",
              (100_000, 10_000, 0), 150_000),
        entry(d2, "r8", "search", "mock/echo", "mock", "mock", "echo", (1_000, 100, 0), 0, basis="unpriced"),
        entry("2026-03-05T10:00:00.000Z", "r9", "chat", "openai/gpt-4o", "oai", "openai", "gpt-4o",
              (1_000, 100, 0), 3_500),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
