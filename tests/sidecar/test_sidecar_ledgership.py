"""Shipping the local ledger: lines in chain order across rotated files, from the acknowledged
watermark, which outlives a restart; a watermark of another stream (a new sidecar id) is ignored."""

from __future__ import annotations

from pathlib import Path

import msgspec

from sluicegate_contract.ledger import Entry, EntryAttribution, decode_entry
from sluicegate_sidecar.ledger.writer import Ledger
from sluicegate_sidecar.ledgership import ACKED_FILE, LedgerShipper


def entry(number: int) -> Entry:
    return Entry(
        time="2026-03-02T10:00:00.000Z",
        request_id=f"r{number}",
        attribution=EntryAttribution(namespace="shop"),
        connection="mock",
        provider="mock",
        model="echo",
        requested_model="echo",
        tier=None,
        verdict="allow",
        usage=None,
        cost_micro_usd=number,
        cost_basis="exact",
        status=200,
    )


async def write(directory: Path, count: int, start: int = 1) -> None:
    ledger = Ledger.open(directory, max_file_bytes=2000, batch_delay=0.0)
    for number in range(start, start + count):
        await ledger.append(entry(number))
    await ledger.aclose()


def seqs(lines: list[bytes]) -> list[int]:
    return [decode_entry(line).seq for line in lines]


async def test_lines_ship_in_order_across_rotated_files_and_resume_after_a_restart(tmp_path: Path) -> None:
    await write(tmp_path, 25)
    assert len(list(tmp_path.glob("ledger-*.jsonl"))) > 2  # rotated
    shipper = LedgerShipper(tmp_path, "s1", batch_max=10)
    assert seqs(shipper.batch()) == list(range(1, 11))
    assert seqs(shipper.batch()) == list(range(1, 11))  # not acknowledged: the same again
    await shipper.acknowledge(7)
    assert seqs(shipper.batch()) == list(range(8, 18))
    await shipper.acknowledge(17)
    assert msgspec.json.decode((tmp_path / ACKED_FILE).read_bytes()) == {"stream": "s1", "seq": 17}

    restarted = LedgerShipper(tmp_path, "s1", batch_max=10)  # kill -9, same volume
    await write(tmp_path, 5, start=26)
    assert seqs(restarted.batch()) == list(range(18, 28))
    await restarted.acknowledge(27)
    assert seqs(restarted.batch()) == [28, 29, 30]
    await restarted.acknowledge(30)
    assert restarted.batch() == [] and not restarted.behind

    assert seqs(LedgerShipper(tmp_path, "s2", batch_max=5).batch()) == [1, 2, 3, 4, 5]  # another stream


async def test_an_empty_or_missing_ledger_has_nothing_to_ship(tmp_path: Path) -> None:
    shipper = LedgerShipper(tmp_path / "none", "s1")
    assert shipper.batch() == [] and not shipper.behind
