"""The fleet ledger in PostgreSQL: shipped entries stored once, acknowledged up to the first gap,
insert-only for the authority; ``ledger verify --database-url`` names the row a superuser changed."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import psycopg
import pytest

from sluicegate_cli.main import main as cli
from sluicegate_contract.ledger import (
    GENESIS,
    Entry,
    EntryAttribution,
    EntryDecision,
    EntryResolution,
    EntryUsage,
    chain_entry,
    format_time,
)
from sluicegate_contract.ledgerrow import COLUMNS, decode_shipped, row_values
from sluicegate_operator.authority.ledgerstore import parse_entries
from sluicegate_operator.authority.migrations import MIGRATIONS
from sluicegate_operator.authority.store import Store
from tests.authority.test_authority_store import ask, terms_with

STREAM = "sidecar-1"


def chain(count: int, cost: int = 100) -> list[bytes]:
    """``count`` chained ledger lines of namespace team-a, each charged to the team-cap policy."""
    lines, prev = [], GENESIS
    for seq in range(1, count + 1):
        entry = Entry(
            time=format_time(datetime.now(UTC)),
            request_id=f"r{seq}",
            attribution=EntryAttribution(namespace="team-a", end_customer=f"c{seq % 2}"),
            connection="mock",
            provider="mock",
            model="mock-small",
            requested_model="mock-small",
            tier=None,
            verdict="allow",
            usage=EntryUsage(input=10, output=5),
            cost_micro_usd=cost,
            cost_basis="exact",
            status=200,
            budget_scopes=("team-cap",),
        )
        prev, line = chain_entry(entry, seq, prev)
        lines.append(line[:-1])
    return lines


async def ship(store: Store, lines: list[bytes], **ask_fields) -> tuple[int, int] | None:
    asks = [ask(**ask_fields)] if ask_fields else []
    _, shipped = await store.sync_shipping(
        "team-a", STREAM, asks, terms_with(10_000), parse_entries("team-a", lines)
    )
    return shipped


def verify(database_url: str, capsys, *extra: str) -> tuple[int, str]:
    code = cli(["ledger", "verify", "--database-url", database_url, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def tamper(database_url: str, *statements: str) -> None:
    """As a superuser, past the insert-only trigger (as an attacker with the server's keys could)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


async def test_a_replayed_batch_is_stored_once_and_the_ack_stops_at_the_first_gap(database_url: str) -> None:
    lines = chain(5)
    store = await Store.connect(database_url)
    try:
        assert await ship(store, lines[:2], want_micro_usd=500) == (2, 2)
        assert await ship(store, lines[:2]) == (0, 2)  # a replay: nothing new, same ack
        assert await ship(store, [lines[0], lines[1], lines[3]]) == (1, 2)  # 4 came, 3 did not
        assert await ship(store, [lines[2], lines[3], lines[4]]) == (2, 5)
    finally:
        await store.close()
    with psycopg.connect(database_url) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM ledger_entries ORDER BY seq").fetchall()]
    assert seqs == [1, 2, 3, 4, 5]


async def test_other_entries_under_seqs_already_acknowledged_are_never_acknowledged(
    database_url: str,
) -> None:
    store = await Store.connect(database_url)
    try:
        first = chain(5)
        assert await ship(store, first) == (5, 5)
        # The same stream id starts over (a wiped ledger, the id file left): seqs 1-3 again, other
        # entries. Acknowledging them as stored would let the sidecar drop entries no row holds.
        assert await ship(store, chain(3, cost=7)) == (0, 0)
        assert await ship(store, first[3:]) == (0, 5)  # the real replay still is acknowledged
    finally:
        await store.close()
    with psycopg.connect(database_url) as conn:
        costs = conn.execute("SELECT cost_micro_usd FROM ledger_entries ORDER BY seq").fetchall()
    assert costs == [(100,)] * 5


async def test_the_authority_cannot_update_or_delete_a_ledger_row(database_url: str) -> None:
    store = await Store.connect(database_url)
    try:
        await ship(store, chain(2))
    finally:
        await store.close()
    for statement in (
        "UPDATE ledger_entries SET cost_micro_usd = 0",
        "DELETE FROM ledger_entries WHERE seq = 1",
        "TRUNCATE ledger_entries",
    ):
        with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT sum(cost_micro_usd), count(*) FROM ledger_entries").fetchone() == (200, 2)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            ["UPDATE ledger_entries SET cost_micro_usd = 1 WHERE seq = 3"],
            "seq 3: edited: column cost_micro_usd",
        ),
        (
            [
                "UPDATE ledger_entries SET line = replace(line, '\"costMicroUSD\":100', '\"costMicroUSD\":1')"
                " WHERE seq = 2"
            ],
            "seq 2: edited",
        ),
        (["DELETE FROM ledger_entries WHERE seq = 2"], "seq 3: deleted: seq 2 missing"),
        (["DELETE FROM ledger_entries WHERE seq = 4"], "seq 4: truncated"),
        (
            [
                "UPDATE ledger_entries SET seq = 100 WHERE seq = 2",
                "UPDATE ledger_entries SET seq = 2 WHERE seq = 3",
                "UPDATE ledger_entries SET seq = 3 WHERE seq = 100",
            ],
            "seq 2: reordered: the row holds the entry of seq 3",
        ),
    ],
    ids=["column-edited", "line-edited", "row-deleted", "last-row-deleted", "rows-swapped"],
)
async def test_ledger_verify_on_the_database_passes_then_names_the_row_a_superuser_changed(
    database_url: str, capsys, change: list[str], named: str
) -> None:
    store = await Store.connect(database_url)
    try:
        await ship(store, chain(4))
    finally:
        await store.close()
    code, text = verify(database_url, capsys)
    assert code == 0, text
    assert "4 entries in 1 streams" in text
    tamper(database_url, *change)
    code, text = verify(database_url, capsys)
    assert code == 1
    assert f"stream {STREAM} {named}" in text


async def test_ledger_verify_accounts_compares_each_window_with_the_sum_of_its_ledger_rows(
    database_url: str, capsys
) -> None:
    lines = chain(3, cost=100)
    store = await Store.connect(database_url)
    try:
        (lease,), _ = await store.sync_shipping(
            "team-a", STREAM, [ask(want_micro_usd=1000)], terms_with(10_000), ()
        )
        await ship(store, lines, lease_id=lease.lease_id, settled_micro_usd=300, final=True)
    finally:
        await store.close()
    code, text = verify(database_url, capsys, "--accounts")
    assert code == 0, text
    assert "1 account windows equal" in text
    tamper(database_url, "DELETE FROM ledger_entries WHERE seq = 3")  # also breaks the chain's end
    code, text = verify(database_url, capsys, "--accounts")
    assert code == 1 and "truncated" in text
    tamper(database_url, "UPDATE ledger_streams SET acked_seq = 2")  # hide it from the chain check
    code, text = verify(database_url, capsys, "--accounts")
    assert code == 1
    assert "settled 300 µUSD, ledger rows sum to 200 µUSD" in text


async def test_rows_stored_before_the_resolution_columns_existed_get_them_from_their_lines(
    database_url: str, capsys
) -> None:
    with psycopg.connect(database_url) as conn:  # a database at migration 3, with a version-2 row
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz)")
        for version, statements in MIGRATIONS[:3]:
            conn.execute(statements.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s, now())", (version,))
        entry = msgspec.json.decode(chain(1)[0], type=Entry)
        v2 = msgspec.structs.replace(
            entry, v=2, resolution=EntryResolution(kind="tier", tier="premium"),
            decision=EntryDecision(action="DOWNGRADE"),
        )  # fmt: skip
        _, line = chain_entry(v2, 1, GENESIS)
        new = ("resolution_kind", "resolution_tier", "decision_action")  # migration 4's columns
        named = dict(
            zip(COLUMNS, row_values(STREAM, decode_shipped(line[:-1]), line[:-1].decode()), strict=True)
        )
        before = [name for name in COLUMNS if name not in new]
        conn.execute(
            f"INSERT INTO ledger_entries ({', '.join(before)}) VALUES ({', '.join(['%s'] * len(before))})",  # noqa: S608
            [named[name] for name in before],
        )
    store = await Store.connect(database_url)  # migrates
    await store.close()
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT resolution_kind, resolution_tier, decision_action FROM ledger_entries")
        assert found.fetchall() == [("tier", "premium", "DOWNGRADE")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # insert-only again after the backfill
            conn.execute("UPDATE ledger_entries SET decision_action = 'allow'")
    assert cli(["ledger", "verify", "--database-url", database_url]) == 0  # the columns match the line
    tamper(database_url, "UPDATE ledger_entries SET decision_action = 'allow'")
    assert cli(["ledger", "verify", "--database-url", database_url]) == 1  # and are checked against it
    assert "column decision_action is 'allow', its line says 'DOWNGRADE'" in capsys.readouterr().err
