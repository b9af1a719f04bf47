from __future__ import annotations

import pytest

from sluicegate_sidecar.providers import sse
from sluicegate_sidecar.providers.base import BadUpstreamResponse
from sluicegate_sidecar.providers.sse import EventSplitter, event_fields


def split_everywhere(stream: bytes) -> list[list[bytes]]:
    """The events a splitter yields for every way of cutting ``stream`` in two, and byte by byte
    (plus what is left at the close: a last event ending in CR may still be waiting for an LF)."""
    results = []
    for cut in range(len(stream) + 1):
        splitter = EventSplitter()
        events = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        results.append(events + [rest for rest in [splitter.rest()] if rest])
    splitter = EventSplitter()
    events = [event for i in range(len(stream)) for event in splitter.feed(stream[i : i + 1])]
    results.append(events + [rest for rest in [splitter.rest()] if rest])
    return results


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_come_out_whole_and_unchanged_however_the_bytes_are_cut(newline):
    events = [
        b"event: message_start" + newline + b'data: {"a":1}' + newline + newline,
        b": keep-alive comment" + newline + newline,
        b'data: {"b":"two words"}' + newline + newline,
    ]
    stream = b"".join(events)
    for result in split_everywhere(stream):
        assert result == events


def test_a_lone_cr_at_the_end_waits_for_a_possible_lf():
    splitter = EventSplitter()
    assert splitter.feed(b"data: 1\r\n\r") == []
    assert splitter.feed(b"\ndata: 2\r\n\r\n") == [b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"]


def test_an_incomplete_last_event_is_left_for_finish():
    splitter = EventSplitter()
    assert splitter.feed(b"data: 1\n\ndata: 2\n") == [b"data: 1\n\n"]
    assert splitter.rest() == b"data: 2\n"
    assert splitter.rest() == b""


def test_event_fields_reads_name_and_joins_multiline_data():
    assert event_fields(b"event: ping\ndata: {}\n\n") == (b"ping", b"{}")
    assert event_fields(b"data:first\ndata: second\n\n") == (b"", b"first\nsecond")
    assert event_fields(b"data: [DONE]\r\n\r\n") == (b"", b"[DONE]")
    assert event_fields(b": comment only\n\n") == (b"", None)


def test_an_event_that_never_ends_is_refused_once_too_big(monkeypatch):
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 64)
    splitter = EventSplitter()
    splitter.feed(b"data: " + b"x" * 50)
    with pytest.raises(BadUpstreamResponse):
        splitter.feed(b"x" * 50)
