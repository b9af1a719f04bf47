"""The budget authority's messages: strict, camelCase, and ready to carry ledger entries later."""

from __future__ import annotations

import msgspec
import pytest

from sluicegate_contract.authority import LeaseAsk, ScopeRef, SyncRequest


def test_a_sync_round_trips_in_camel_case_and_carries_ledger_entries_untouched() -> None:
    message = SyncRequest(
        namespace="team-a",
        sidecar_id="s1",
        asks=(LeaseAsk(scope=ScopeRef(policy="p", window="day"), lease_id="l", settled_micro_usd=5),),
        entries=(msgspec.Raw(b'{"seq":1,"costMicroUSD":5}'),),
    )
    wire = msgspec.json.encode(message)
    assert b'"sidecarId":"s1"' in wire and b'"settledMicroUsd":5' in wire
    back = msgspec.json.decode(wire, type=SyncRequest)
    assert back.asks == message.asks
    assert bytes(back.entries[0]) == b'{"seq":1,"costMicroUSD":5}'


def test_unknown_fields_and_windows_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"namespace":"a","sidecarId":"s","extra":1}', type=SyncRequest)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"policy":"p","window":"year"}', type=ScopeRef)
