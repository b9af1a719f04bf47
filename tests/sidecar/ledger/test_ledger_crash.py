"""kill -9 in the middle of writing loses nothing that was acknowledged and leaves a verifiable chain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sluicegate_contract.ledgerfiles import read_entries
from sluicegate_reports.ledger_cli import verify
from sluicegate_sidecar.ledger.writer import Ledger

ROOT = Path(__file__).resolve().parents[3]

# Many writers keep batches of large lines in flight, so that the kill often lands inside a write.
WRITER = r"""
import asyncio, sys
from sluicegate_sidecar.ledger.writer import Ledger
from sluicegate_contract.ledger import Entry, EntryAttribution, EntryUsage

def make(worker, number):
    return Entry(
        time="2026-11-23T12:00:00.000Z",
        request_id=f"{sys.argv[2]}-{worker}-{number}",
        attribution=EntryAttribution(namespace="shop", tags={f"k{i}": "x" * 40 for i in range(30)}),
        connection="c", provider="openai", model="m", requested_model="m", tier=None, verdict="allow",
        usage=EntryUsage(input=1, output=1), cost_micro_usd=7, cost_basis="exact", status=200,
        budget_scopes=("cap",),
    )

async def worker(ledger, number):
    count = 0
    while True:
        done = await ledger.append(make(number, count))
        sys.stdout.write(f"{done.seq} {done.request_id}\n")
        sys.stdout.flush()
        count += 1

async def main():
    ledger = Ledger.open(sys.argv[1], max_file_bytes=400_000, batch_max=64, batch_delay=0.001)
    await asyncio.gather(*(worker(ledger, n) for n in range(64)))

asyncio.run(main())
"""


def run_and_kill(directory: Path, round_name: str, acks_before_kill: int) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("contract", "sidecar"))}
    acknowledged: dict[str, int] = {}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), round_name], stdout=subprocess.PIPE, env=env
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                seq, request_id = line.decode().split()
                acknowledged[request_id] = int(seq)
                if len(acknowledged) >= acks_before_kill:
                    os.kill(process.pid, signal.SIGKILL)
                    break
            for line in process.stdout:  # acknowledgements already in the pipe when it died
                if line.endswith(b"\n"):
                    seq, request_id = line.decode().split()
                    acknowledged[request_id] = int(seq)
        finally:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    return acknowledged


def test_kill_9_mid_write_loses_no_acknowledged_entry_and_the_chain_verifies(tmp_path: Path) -> None:
    acknowledged: dict[str, int] = {}
    for round_number, acks in enumerate((1_500, 900, 2_000)):
        acknowledged |= run_and_kill(tmp_path, f"r{round_number}", acks)
        _, problem = verify([tmp_path])
        assert problem is None or problem.kind == "truncated", problem  # at most a torn last line
        ledger = Ledger.open(tmp_path)  # what the restarted sidecar does: cut the torn tail
        assert ledger.healthy, ledger.problem
        assert verify([tmp_path])[1] is None
    on_disk = {entry.request_id: entry.seq for entry in read_entries([tmp_path])}
    missing = {rid: seq for rid, seq in acknowledged.items() if on_disk.get(rid) != seq}
    assert not missing, f"{len(missing)} acknowledged entries lost, e.g. {next(iter(missing.items()))}"
    assert len(on_disk) >= len(acknowledged) >= 4_400
    assert sorted(on_disk.values()) == list(range(1, len(on_disk) + 1))
