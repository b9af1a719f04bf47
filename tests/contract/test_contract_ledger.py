"""The ledger entry format both sides share: version-1 lines still read and verify; version 2 carries
how the model resolved and the structured verdict, inside the hash chain."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from sluicegate_contract.ledger import (
    ENTRY_VERSION,
    GENESIS,
    Entry,
    EntryAttribution,
    EntryDecision,
    EntryReportedUsage,
    EntryResolution,
    chain_entry,
    decode_entry,
    entry_hash,
    entry_line,
)

V1_LEDGER = Path(__file__).parents[1] / "reports" / "data" / "savings-ledger" / "ledger-000001.jsonl"


def test_a_version_1_line_reads_unchanged_and_its_hash_still_verifies() -> None:
    for line in V1_LEDGER.read_bytes().splitlines():
        entry = decode_entry(line)
        assert (entry.v, entry.resolution, entry.decision) == (None, None, None)
        assert entry_hash(entry) == entry.hash
        assert entry_line(entry) == line + b"\n"  # written back byte for byte: no new keys


def _v2(**decision: object) -> Entry:
    return Entry(
        time="2026-03-02T10:00:00.000Z", request_id="r1", attribution=EntryAttribution(namespace="shop"),
        connection="oai", provider="openai", model="gpt-4o-mini", requested_model="auto", tier="light",
        verdict="allow; shadow=BLOCK", usage=None, cost_micro_usd=5, cost_basis="exact", status=200,
        v=ENTRY_VERSION, resolution=EntryResolution(kind="auto", tier="light", reason="short prompt"),
        decision=EntryDecision(**decision),  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_version_2_entry_round_trips_and_its_hash_covers_the_decision() -> None:
    digest, line = chain_entry(_v2(action="allow", shadow="BLOCK"), 1, GENESIS)
    entry = decode_entry(line)
    assert entry.v == 2 and entry.decision == EntryDecision(action="allow", shadow="BLOCK")
    assert entry.resolution == EntryResolution(kind="auto", tier="light", reason="short prompt")
    assert entry_hash(entry) == digest == entry.hash
    edited = msgspec.structs.replace(entry, decision=EntryDecision(action="allow"))
    assert entry_hash(edited) != entry.hash


def test_an_unknown_verdict_word_is_not_a_ledger_entry() -> None:
    _, line = chain_entry(_v2(action="allow"), 1, GENESIS)
    with pytest.raises(msgspec.ValidationError):
        decode_entry(line.replace(b'"action":"allow"', b'"action":"MAYBE"'))


def canonical(entry: Entry, *, without_hash: bool = False) -> bytes:
    """The canonical JSON of an entry by its definition, apart from the module's two-halves encoding:
    every member, keys sorted, the optional ones left out when None."""
    fields = msgspec.to_builtins(entry)
    for name in ("reportedUsage", "anomaly", "v", "resolution", "decision"):
        if fields.get(name) is None:
            del fields[name]
    if without_hash:
        del fields["hash"]
    return msgspec.json.encode(fields, order="sorted")


def test_chaining_writes_the_canonical_line_and_hash_whatever_the_values_hold() -> None:
    """``chain_entry`` builds its line from two halves; it must be byte for byte the canonical line,
    with values that look like JSON keys (a dimension named ``hash``, quotes, commas) and without the
    optional fields; ``entry_hash`` and ``entry_line`` (what the verifiers use) agree."""
    tricky = EntryAttribution(namespace="shop", team='","hash":"x', tags={'a"b': "}{,\\", "hash": ""})
    plain = msgspec.structs.replace(_v2(action="allow"), v=None, resolution=None, decision=None)
    anomalous = msgspec.structs.replace(
        plain,
        usage=None,
        budget_scopes=(),
        cost_basis="anomalous",
        anomaly="output over the cap",
        reported_usage=EntryReportedUsage(input=None, output=10**9),
        status="partial",
        connection=None,
        model=None,
    )
    cases = (
        _v2(action="allow", shadow="BLOCK"),
        msgspec.structs.replace(plain, attribution=tricky),
        anomalous,
    )
    for entry in cases:
        prev = "ab" * 32
        digest, line = chain_entry(entry, 7, prev)
        chained = msgspec.structs.replace(entry, seq=7, prev_hash=prev, hash=digest)
        assert digest == entry_hash(chained)
        assert line == entry_line(chained)
        assert decode_entry(line) == chained
        assert line == canonical(chained) + b"\n"
        assert digest == hashlib.sha256(prev.encode() + canonical(chained, without_hash=True)).hexdigest()


def test_chaining_encodes_every_field_of_an_entry_on_its_side_of_hash() -> None:
    """``chain_entry`` encodes an entry through two mirror structs: a field added to ``Entry`` and not
    to them would be left out of the line and its hash."""
    from sluicegate_contract.ledger import _After, _Before

    def names(struct: type) -> set[str]:
        return {field.encode_name for field in msgspec.structs.fields(struct)}

    assert names(_Before) | names(_After) == names(Entry) - {"hash"}
    assert all(name < "hash" for name in names(_Before)) and all(name > "hash" for name in names(_After))
