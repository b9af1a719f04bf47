"""`sluicegate ledger verify` catches every kind of tampering and names the first bad line."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from sluicegate_contract.ledger import EntryReportedUsage, decode_entry, entry_hash, entry_line
from sluicegate_contract.ledgerfiles import ledger_files
from sluicegate_reports.ledger_cli import main, verify
from tests.support.budget_samples import entry, write_ledger

# Each line is about 650 bytes: three entries per file, eight entries over three files.
PER_FILE_BYTES = 2_000


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    write_ledger(tmp_path, [entry(i) for i in range(8)], max_file_bytes=PER_FILE_BYTES)
    assert [p.name for p in ledger_files([tmp_path])] == [
        "ledger-000001.jsonl",
        "ledger-000002.jsonl",
        "ledger-000003.jsonl",
    ]
    return tmp_path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(new_lines))


def first_problem(directory: Path) -> str:
    _, problem = verify([directory])
    assert problem is not None, "tampering went unnoticed"
    return str(problem)


def test_an_untouched_ledger_verifies_with_exit_0(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(ledger)]) == 0
    assert "ok: 8 entries" in capsys.readouterr().out


def test_an_edited_amount_is_caught_at_its_line(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ledger / "ledger-000001.jsonl"
    content = lines(path)
    content[1] = content[1].replace(b'"costMicroUSD":1000', b'"costMicroUSD":1')
    rewrite(path, content)
    assert main(["verify", str(ledger)]) == 1
    assert capsys.readouterr().err.strip() == f"{path}:2: edited: its hash does not match its content"


def test_an_edit_with_its_hash_recomputed_breaks_the_chain_at_the_next_line(ledger: Path) -> None:
    path = ledger / "ledger-000001.jsonl"
    content = lines(path)
    forged = msgspec.structs.replace(decode_entry(content[1].rstrip(b"\n")), cost_micro_usd=1)
    content[1] = entry_line(msgspec.structs.replace(forged, hash=entry_hash(forged)))
    rewrite(path, content)
    assert verify([path])[1] is not None
    assert first_problem(ledger).startswith(f"{path}:3: edited: prevHash does not match {path}:2")


def test_a_deleted_line_is_caught_where_it_was(ledger: Path) -> None:
    path = ledger / "ledger-000001.jsonl"
    content = lines(path)
    del content[1]
    rewrite(path, content)
    assert first_problem(ledger) == f"{path}:2: deleted: seq 2 missing before this line"


def test_deleting_the_first_entry_is_caught(ledger: Path) -> None:
    path = ledger / "ledger-000001.jsonl"
    rewrite(path, lines(path)[1:])
    assert first_problem(ledger) == f"{path}:1: deleted: seq 1 missing before this line"


def test_lines_cut_from_the_end_of_a_rotated_file_are_caught_in_the_next_file(ledger: Path) -> None:
    rewrite(ledger / "ledger-000001.jsonl", lines(ledger / "ledger-000001.jsonl")[:1])
    problem = first_problem(ledger)
    assert problem == f"{ledger / 'ledger-000002.jsonl'}:1: deleted: seq 2 to 3 missing before this line"


def test_swapped_lines_are_reported_as_reordered(ledger: Path) -> None:
    path = ledger / "ledger-000002.jsonl"
    content = lines(path)
    content[0], content[1] = content[1], content[0]
    rewrite(path, content)
    problem = first_problem(ledger)
    assert problem.startswith(f"{path}:1: reordered: seq 5 where seq 4 was expected (it is at {path}:2)")


def test_a_duplicated_line_is_reported_as_reordered(ledger: Path) -> None:
    path = ledger / "ledger-000001.jsonl"
    content = lines(path)
    content.insert(2, content[1])
    rewrite(path, content)
    assert first_problem(ledger) == f"{path}:3: reordered: seq 2 comes after seq 2"


def test_a_torn_last_line_is_reported_as_truncated(ledger: Path) -> None:
    path = ledger / "ledger-000003.jsonl"
    with path.open("ab") as handle:
        handle.write(b'{"attribution":{"endCus')
    assert first_problem(ledger) == f"{path}:3: truncated: the last line is incomplete (torn write)"


def test_a_missing_rotated_file_is_named(ledger: Path) -> None:
    (ledger / "ledger-000002.jsonl").unlink()
    problem = first_problem(ledger)
    assert problem.startswith(f"{ledger / 'ledger-000003.jsonl'}:1: truncated: ledger-000002.jsonl missing")


def test_a_missing_first_file_is_named(ledger: Path) -> None:
    (ledger / "ledger-000001.jsonl").unlink()
    problem = first_problem(ledger)
    assert problem.startswith(f"{ledger / 'ledger-000002.jsonl'}:1: truncated: ledger-000001.jsonl missing")


def test_whitespace_or_key_order_changes_are_edits(ledger: Path) -> None:
    path = ledger / "ledger-000002.jsonl"
    content = lines(path)
    content[2] = content[2].replace(b'"seq":', b'"seq": ')
    rewrite(path, content)
    assert first_problem(ledger) == f"{path}:3: edited: the line is not in canonical form (changed by hand)"


def test_an_inserted_foreign_line_is_an_edit(ledger: Path) -> None:
    path = ledger / "ledger-000001.jsonl"
    content = lines(path)
    content.insert(1, b'{"note":"hello"}\n')
    rewrite(path, content)
    assert first_problem(ledger).startswith(f"{path}:2: edited: not a ledger entry")


def test_files_given_one_by_one_verify_like_the_directory(ledger: Path) -> None:
    files = [str(p) for p in ledger_files([ledger])]
    assert verify(files) == (8, None)
    assert verify(files[1:])[1] is not None


def test_a_ledger_with_an_anomalous_entry_verifies_and_keeps_the_reported_and_bounded_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = msgspec.structs.replace(
        entry(1),
        cost_basis="anomalous",
        anomaly="huge",
        reported_usage=EntryReportedUsage(input=None, output=10**12),
    )
    write_ledger(tmp_path, [entry(0), odd, entry(2)])
    assert main(["verify", str(tmp_path)]) == 0
    assert "ok: 3 entries" in capsys.readouterr().out
    line = lines(tmp_path / "ledger-000001.jsonl")[1]
    assert b'"costBasis":"anomalous"' in line and b'"reportedUsage":{' in line
    assert decode_entry(line.rstrip(b"\n")).reported_usage == EntryReportedUsage(input=None, output=10**12)


def test_lines_written_before_anomalous_existed_still_verify() -> None:
    """The new fields are written only when set, so older ledgers hash exactly as they did."""
    old = Path(__file__).parent.parent / "reports" / "data" / "recon-ledger"
    assert b"reportedUsage" not in b"".join(p.read_bytes() for p in old.glob("*.jsonl"))
    _, problem = verify([old])
    assert problem is None


def test_a_file_pruned_while_it_is_verified_starts_the_check_again(
    ledger: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running fleet sidecar prunes acknowledged files: one may go between the listing and its
    reading. The check starts again (a real gap is still found then); only a file that keeps
    vanishing fails it."""
    from sluicegate_reports import ledger_cli

    real = ledger_cli.verify
    calls: list[int] = []

    def pruned_once(paths):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError(str(ledger / "ledger-000001.jsonl"))
        return real(paths)

    monkeypatch.setattr(ledger_cli, "verify", pruned_once)
    assert main(["verify", str(ledger)]) == 0
    assert len(calls) == 2 and "ok: 8 entries" in capsys.readouterr().out

    def always_gone(paths):  # type: ignore[no-untyped-def]
        raise FileNotFoundError(str(ledger / "ledger-000001.jsonl"))

    monkeypatch.setattr(ledger_cli, "verify", always_gone)
    assert main(["verify", str(ledger)]) != 0
