"""Shipping the local ledger: lines in chain order across rotated files, from the acknowledged
watermark, which outlives a restart; a watermark of another stream (a new sidecar id) is ignored.
Closed files the database acknowledged are pruned after the retention; what is left verifies. A
ledger wiped or cut below the acknowledged seq, its id left, goes on as a new stream from seq 1."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from sluicegate_contract.ledger import Entry, EntryAttribution, decode_entry
from sluicegate_contract.ledgerfiles import PRUNED_FILE, file_name
from sluicegate_reports.ledger_cli import main as ledger_main
from sluicegate_sidecar.ledger.writer import Ledger
from sluicegate_sidecar.ledgership import ACKED_FILE, LedgerShipper, ledger_stream


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


def age(paths: list[Path], seconds: float) -> None:
    for path in paths:
        stamp = path.stat().st_mtime - seconds
        os.utime(path, (stamp, stamp))


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("ledger-0*.jsonl"))


async def test_acknowledged_closed_files_are_pruned_after_the_retention_and_the_rest_still_verifies(
    tmp_path: Path,
) -> None:
    await write(tmp_path, 25)
    files = sorted(tmp_path.glob("ledger-0*.jsonl"))
    ends = [decode_entry(path.read_bytes().splitlines()[-1]) for path in files]
    last_seqs = [end.seq for end in ends]
    assert len(files) >= 4
    shipper = LedgerShipper(tmp_path, "s1", batch_max=100, retain_seconds=3600)
    shipper.batch()
    await shipper.acknowledge(25)  # everything is in the database, but nothing is an hour old yet
    await shipper.pruned()
    assert names(tmp_path) == [path.name for path in files]

    age(files, 7200)
    shipper._prune_at = 0.0  # the next pass is due (they run at most once a minute)
    await shipper.acknowledge(last_seqs[1] + 1)  # an older acknowledgement: the watermark stays at 25
    await shipper.pruned()
    # Every file is gone but the newest, which holds the chain's end (the writer goes on from it).
    assert names(tmp_path) == [path.name for path in files[-1:]]
    assert msgspec.json.decode((tmp_path / PRUNED_FILE).read_bytes()) == {
        "stream": "s1", "seq": last_seqs[-2], "hash": ends[-2].hash, "file": len(files) - 1,
    }  # fmt: skip
    out = io.StringIO()
    assert ledger_main(["verify", str(tmp_path)], out) == 0
    assert f"chain intact (pruned up to seq {last_seqs[-2]}, acknowledged in the database)" in out.getvalue()

    # The writer goes on with the chain after a restart, and the shipper from the watermark.
    await write(tmp_path, 3, start=26)
    assert seqs(LedgerShipper(tmp_path, "s1").batch()) == [26, 27, 28]
    assert ledger_main(["verify", str(tmp_path)], io.StringIO()) == 0


async def test_files_with_unacknowledged_lines_and_the_chains_end_are_never_pruned(tmp_path: Path) -> None:
    await write(tmp_path, 25)
    files = sorted(tmp_path.glob("ledger-0*.jsonl"))
    first_of_third = decode_entry(files[2].read_bytes().splitlines()[0]).seq
    age(files, 7200)
    shipper = LedgerShipper(tmp_path, "s1", batch_max=100, retain_seconds=0)
    shipper.batch()
    await shipper.acknowledge(first_of_third)  # the third file is acknowledged only in part
    await shipper.pruned()
    assert names(tmp_path) == [path.name for path in files[2:]]
    assert ledger_main(["verify", str(tmp_path)], io.StringIO()) == 0

    # An empty newest file (just rotated): the chain's end is in the file before it, which is kept.
    (tmp_path / file_name(len(files) + 1)).touch()
    shipper._prune_at = 0.0
    await shipper.acknowledge(25)
    await shipper.pruned()
    assert names(tmp_path) == [files[-1].name, file_name(len(files) + 1)]
    await write(tmp_path, 2, start=26)  # a restart continues the chain from it
    assert ledger_main(["verify", str(tmp_path)], io.StringIO()) == 0


async def test_without_a_retention_nothing_is_pruned(tmp_path: Path) -> None:
    await write(tmp_path, 25)
    before = names(tmp_path)
    age(sorted(tmp_path.glob("ledger-0*.jsonl")), 10 * 86400)
    shipper = LedgerShipper(tmp_path, "s1", batch_max=100)
    shipper.batch()
    await shipper.acknowledge(25)
    await shipper.pruned()
    assert names(tmp_path) == before and not (tmp_path / PRUNED_FILE).exists()


def test_verify_still_names_a_file_missing_when_no_pruning_explains_it(tmp_path: Path) -> None:
    asyncio.run(write(tmp_path, 25))
    files = sorted(tmp_path.glob("ledger-0*.jsonl"))
    files[0].unlink()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert ledger_main(["verify", str(tmp_path)], io.StringIO()) == 1
    assert "truncated: ledger-000001.jsonl missing before this file" in err.getvalue()


def ids(*names: str) -> Callable[[Path], str]:
    """``authorityclient.sidecar_id`` with the ids it makes named in advance."""
    fresh = iter(names)

    def sidecar_id(directory: Path) -> str:
        path = directory / "sidecar-id"
        if not path.exists():
            path.write_text(next(fresh))
        return path.read_text()

    return sidecar_id


async def test_a_ledger_cut_below_the_acknowledged_seq_goes_on_as_a_new_stream_from_seq_1(
    tmp_path: Path,
) -> None:
    sidecar_id = ids("old", "new")
    assert ledger_stream(tmp_path, ("sidecar-id", sidecar_id)) == "old"  # a first start
    await write(tmp_path, 25)
    shipper = LedgerShipper(tmp_path, "old", batch_max=100)
    shipper.batch()
    await shipper.acknowledge(25)
    assert ledger_stream(tmp_path, ("sidecar-id", sidecar_id)) == "old"  # a restart: the same stream
    files = sorted(tmp_path.glob("ledger-0*.jsonl"))
    files[-1].unlink()  # the volume restored from an older snapshot: the chain ends before seq 25
    assert ledger_stream(tmp_path, ("sidecar-id", sidecar_id)) == "new"
    assert names(tmp_path) == [] and not (tmp_path / ACKED_FILE).exists()
    assert names(tmp_path / "stream-old") == [path.name for path in files[:-1]]  # kept aside
    await write(tmp_path, 2, start=26)
    assert seqs(LedgerShipper(tmp_path, "new").batch()) == [1, 2]  # a new chain from seq 1


def test_a_wiped_ledger_whose_id_survived_goes_on_as_a_new_stream(tmp_path: Path) -> None:
    sidecar_id = ids("old", "new")
    asyncio.run(write(tmp_path, 3))
    assert ledger_stream(tmp_path, ("sidecar-id", sidecar_id)) == "old"
    for path in tmp_path.glob("ledger-*"):
        path.unlink()
    assert ledger_stream(tmp_path, ("sidecar-id", sidecar_id)) == "new"
