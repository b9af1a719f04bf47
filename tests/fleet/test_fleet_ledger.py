"""The fleet ledger with real processes: every request a client got a 200 for reaches PostgreSQL, once,
through normal running, a ``kill -9`` and restart on the same volume, and a rollout that throws the
volume away after SIGTERM; the database's chains then verify. Acknowledged files are pruned and the
rest of the local chain still verifies; a wiped ledger whose sidecar id survived ships a new stream.
One scenario for all (each sidecar and authority start costs seconds on 2 shared cores)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from sluicegate_cli.main import main as cli
from tests.support.fleet import Proc, authority, sidecar, start_all, stop_all
from tests.support.sidecar_harness import budget, connection, priced, render_dir

FLAGS = ("--lease-refresh-seconds", "0.25", "--budget-wait-seconds", "5")


def resources() -> list:
    return [
        connection("mock", "mock", [priced("mock-small", input_per_mtok=2.0, output_per_mtok=100.0)]),
        budget("team-cap", 50.0),
    ]


def burst(car: Proc, count: int, refused: list[str]) -> set[str]:
    """``count`` concurrent requests; the request ids a client got a 200 for (the others in ``refused``)."""

    def one(index: int) -> str | None:
        request_id = f"req-{uuid.uuid4()}"
        body = {
            "model": "mock-small",
            "messages": [{"role": "user", "content": f"hello {index}"}],
            "max_tokens": 8,
            "stream": index % 2 == 0,
        }
        response = httpx.post(
            f"{car.url}/v1/chat/completions", json=body, headers={"x-request-id": request_id}, timeout=30
        )
        if response.status_code != 200:
            refused.append(f"{car.log.name}: {response.status_code} {response.text[:200]}")
            return None
        return request_id

    with ThreadPoolExecutor(8) as pool:
        return {found for found in pool.map(one, range(count)) if found}


def rows(database_url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT request_id, stream_id, seq FROM ledger_entries").fetchall()


def wait_until(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def file_indexes(ledger: Path) -> list[int]:
    return sorted(int(path.name[7:13]) for path in ledger.glob("ledger-0*.jsonl"))


# Files of ~2 KB (two or three entries each), deleted as soon as the database acknowledged them.
PRUNING = ("--ledger-file-mb", "0.002", "--ledger-retain-hours", "0")


def test_every_request_a_client_got_a_200_for_is_one_database_row_after_a_kill_9_restart_a_rollout_and_a_wipe(
    tmp_path: Path, database_url: str, capsys
) -> None:
    config = render_dir(tmp_path / "config", resources())
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=3.0)
    ledgers = {name: tmp_path / f"ledger-{name}" for name in "abc"}
    cars = [
        sidecar(config, ledgers[name], tmp_path / f"sidecar-{name}.log", [auth.url], *FLAGS, *extra)
        for name, extra in (("a", ()), ("b", ()), ("c", PRUNING))
    ]
    start_all([auth])  # first: a sidecar that finds no authority backs off before its next sync
    start_all(cars)
    crashed, rolled, steady = cars
    ok: set[str] = set()
    refused: list[str] = []
    try:
        for car in cars:  # (a) normal running
            ok |= burst(car, 20, refused)
        ok |= burst(crashed, 20, refused)
        crashed.kill()  # (b) kill -9 right after its replies, then back on the same volume
        crashed.start()
        ok |= burst(crashed, 10, refused)
        ok |= burst(rolled, 20, refused)
        assert rolled.terminate() == 0  # (c) a rollout: SIGTERM, then the volume is gone
        shutil.rmtree(ledgers["b"])
        ok |= burst(steady, 10, refused)
        # (d) its acknowledged files pruned, what is left of its chain still verifies ...
        wait_until(lambda: file_indexes(ledgers["c"])[0] > 2, "the acknowledged files pruned")
        capsys.readouterr()
        assert cli(["ledger", "verify", str(ledgers["c"])]) == 0
        assert "acknowledged in the database" in capsys.readouterr().out
        # (e) ... then the ledger (and its watermark) wiped, the sidecar id left: its seqs start at 1 again, so
        # it must ship a new stream, not the old one whose 1-30 the database holds
        assert steady.terminate() == 0
        for path in ledgers["c"].iterdir():
            if path.name != "sidecar-id":
                path.unlink()
        steady.start()
        ok |= burst(steady, 10, refused)
    finally:
        stop_all([crashed, steady, rolled])  # they ship what is left to the authority, still up
        stop_all([auth])
    assert len(ok) == 130, refused  # the cap is far away: every request was served
    found = rows(database_url)
    counts = Counter(request_id for request_id, _, _ in found)
    assert ok <= set(counts)  # every 200 is in the database ...
    assert max(counts.values()) == 1  # ... once
    assert len({stream for _, stream, _ in found}) == 4  # one stream per sidecar volume, one after the wipe
    assert "goes on as sidecar" in (tmp_path / "sidecar-c.log").read_text()

    with psycopg.connect(database_url) as conn:  # the price book the config carried, for reports
        priced = conn.execute(
            "SELECT connection, model, price->'base'->'inputPerMtok', price->'base'->'outputPerMtok'"
            " FROM ledger_prices"
        ).fetchall()
    assert priced == [("mock", "mock-small", 2_000_000, 100_000_000)]

    capsys.readouterr()
    assert cli(["ledger", "verify", "--database-url", database_url]) == 0
    assert "4 streams" in capsys.readouterr().out
