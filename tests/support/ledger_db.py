"""Put ledger files into a fleet-ledger database the way the authority stores shipped entries."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from sluicegate_contract.ledgerrow import decode_shipped
from sluicegate_operator.authority.ledgerstore import parse_entries
from sluicegate_operator.authority.store import Store


def _terms(policy, split, window, now):  # no budgets: entries only
    return None


async def _load(url: str, ledgers: dict[str, Path]) -> int:
    store = await Store.connect(url)
    count = 0
    try:
        for stream, directory in ledgers.items():
            by_namespace: dict[str, list[bytes]] = defaultdict(list)
            for path in sorted(directory.glob("ledger-*.jsonl")):
                for line in path.read_bytes().splitlines():
                    by_namespace[decode_shipped(line).attribution.namespace].append(line)
            for namespace, lines in by_namespace.items():
                for start in range(0, len(lines), 5000):
                    batch = parse_entries(namespace, lines[start : start + 5000])
                    await store.sync_shipping(namespace, stream, [], _terms, batch)
                    count += len(batch)
    finally:
        await store.close()
    return count


def load_ledgers(url: str, ledgers: dict[str, Path]) -> int:
    """Ship each directory's entries as stream ``name`` (migrating the database first); returns how many."""
    return asyncio.run(_load(url, ledgers))
