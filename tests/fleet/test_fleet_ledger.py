"""The fleet ledger with real processes: every request a client got a 200 for reaches PostgreSQL, once,
through normal running, a ``kill -9`` and restart on the same volume, and a rollout that throws the
volume away after SIGTERM; the database's chains then verify. Acknowledged files are pruned and the
rest of the local chain still verifies; a wiped ledger whose sidecar id survived ships a new stream."""

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
            refused.append(f"{response.status_code} {response.text[:200]}")
            return None
        return request_id

    with ThreadPoolExecutor(8) as pool:
        return {found for found in pool.map(one, range(count)) if found}


def rows(database_url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT request_id, stream_id, seq FROM ledger_entries").fetchall()


def test_every_request_a_client_got_a_200_for_is_one_database_row_after_running_a_kill_9_restart_and_a_rollout(
    tmp_path: Path, database_url: str, capsys
) -> None:
    config = render_dir(tmp_path / "config", resources())
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=3.0)
    start_all([auth])
    cars = [
        sidecar(config, tmp_path / f"ledger-{name}", tmp_path / f"sidecar-{name}.log", [auth.url], *FLAGS)
        for name in "abc"
    ]
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
        shutil.rmtree(tmp_path / "ledger-b")
        ok |= burst(steady, 10, refused)
    finally:
        stop_all([crashed, steady, rolled])
        stop_all([auth])
    assert len(ok) == 120, refused  # the cap is far away: every request was served
    found = rows(database_url)
    counts = Counter(request_id for request_id, _, _ in found)
    assert ok <= set(counts)  # every 200 is in the database ...
    assert max(counts.values()) == 1  # ... once
    assert len({stream for _, stream, _ in found}) == 3  # one stream per sidecar volume

    with psycopg.connect(database_url) as conn:  # the price book the config carried, for reports
        priced = conn.execute(
            "SELECT connection, model, price->'base'->'inputPerMtok', price->'base'->'outputPerMtok'"
            " FROM ledger_prices"
        ).fetchall()
    assert priced == [("mock", "mock-small", 2_000_000, 100_000_000)]

    assert cli(["ledger", "verify", "--database-url", database_url]) == 0
    assert "3 streams" in capsys.readouterr().out


def wait_until(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def file_indexes(ledger: Path) -> list[int]:
    return sorted(int(path.name[7:13]) for path in ledger.glob("ledger-0*.jsonl"))


def test_acknowledged_ledger_files_are_pruned_after_the_retention_and_the_chain_left_still_verifies(
    tmp_path: Path, database_url: str, capsys
) -> None:
    config = render_dir(tmp_path / "config", resources())
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=3.0)
    ledger = tmp_path / "ledger"
    # Files of ~2 KB (two or three entries each), deleted as soon as the database acknowledged them.
    pruning = ("--ledger-file-mb", "0.002", "--ledger-retain-hours", "0")
    car = sidecar(config, ledger, tmp_path / "sidecar.log", [auth.url], *FLAGS, *pruning)
    start_all([auth, car])
    refused: list[str] = []
    try:
        ok = burst(car, 16, refused)
        stored = lambda: ok <= {request_id for request_id, _, _ in rows(database_url)}  # noqa: E731
        wait_until(lambda: stored() and file_indexes(ledger)[0] > 2, "all rows stored, old files pruned")
        assert car.terminate() == 0
        car.start()  # on the pruned volume: the same stream, its chain goes on from the kept file
        ok |= burst(car, 6, refused)
        assert car.terminate() == 0
    finally:
        stop_all([car, auth])
    assert len(ok) == 22, refused
    found = rows(database_url)
    assert sorted(request_id for request_id, _, _ in found) == sorted(ok)  # every 200, once
    assert len({stream for _, stream, _ in found}) == 1
    assert sorted(seq for _, _, seq in found) == list(range(1, 23))
    assert file_indexes(ledger)[0] > 2  # a prefix of the files is gone ...
    capsys.readouterr()
    assert cli(["ledger", "verify", str(ledger)]) == 0  # ... and what is left verifies from there
    assert "acknowledged in the database" in capsys.readouterr().out
    assert cli(["ledger", "verify", "--database-url", database_url]) == 0


def test_a_sidecar_whose_ledger_was_wiped_but_whose_id_survived_ships_its_new_entries_as_a_new_stream(
    tmp_path: Path, database_url: str, capsys
) -> None:
    config = render_dir(tmp_path / "config", resources())
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=3.0)
    ledger = tmp_path / "ledger"
    car = sidecar(config, ledger, tmp_path / "sidecar.log", [auth.url], *FLAGS)
    start_all([auth, car])
    refused: list[str] = []
    try:
        ok = burst(car, 8, refused)
        assert car.terminate() == 0  # every entry shipped and acknowledged
        for path in ledger.iterdir():  # the ledger (and its watermark) wiped, the id file left
            if path.name != "sidecar-id":
                path.unlink()
        car.start()  # its seqs start at 1 again: not under the old stream, whose 1-8 the database holds
        ok |= burst(car, 8, refused)
        assert car.terminate() == 0
    finally:
        stop_all([car, auth])
    assert len(ok) == 16, refused
    found = rows(database_url)
    assert sorted(request_id for request_id, _, _ in found) == sorted(ok)  # every 200, once
    assert sorted(Counter(stream for _, stream, _ in found).values()) == [8, 8]  # two streams of 8
    assert "goes on as sidecar" in (tmp_path / "sidecar.log").read_text()
    capsys.readouterr()
    assert cli(["ledger", "verify", "--database-url", database_url]) == 0
    assert "2 streams" in capsys.readouterr().out
