"""Retry-After in every form the providers send, garbage ignored; jittered backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from sluicegate_sidecar.routing.retryafter import backoff, parse_retry_after

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250.5", "retry-after": "9"}, 0.2505),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "Mon, 23 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Monday, 23-Nov-26 12:01:00 GMT"}, 60.0),
        ({"retry-after": "Mon Nov 23 12:00:10 2026"}, 10.0),
        ({"retry-after": "Mon, 23 Nov 2026 11:00:00 GMT"}, 0.0),
        ({"retry-after": "86400"}, 600.0),
        ({"retry-after-ms": "99999999999999999999"}, 600.0),
        ({"retry-after": "Tue, 24 Nov 2026 12:00:00 GMT"}, 600.0),
    ],
)
def test_valid_forms_are_parsed_and_capped(headers, expected):
    assert parse_retry_after(headers, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-5", "+5", "1e3", "inf", "nan", "0x10", "5s", "1.2.3", ".5", "Mon, 99 Foo 2026", "7" * 65],
)
def test_garbage_is_ignored(value):
    assert parse_retry_after({"retry-after": value}, NOW) is None
    assert parse_retry_after({"retry-after-ms": value}, NOW) is None


def test_no_header_means_no_advice():
    assert parse_retry_after({"content-type": "application/json"}, NOW) is None


def test_a_naive_now_is_taken_as_utc():
    naive = datetime(2026, 11, 23, 12, 0, 0)
    assert parse_retry_after({"retry-after": "Mon, 23 Nov 2026 12:00:05 GMT"}, naive) == 5.0


def test_cap_is_adjustable():
    assert parse_retry_after({"retry-after": "100"}, NOW, cap=30.0) == 30.0


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(5)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (10_000, 8.0)]:
        waits = [backoff(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 4  # actually jittered


def test_backoff_is_reproducible_with_a_seed():
    assert backoff(2, random.Random(1)) == backoff(2, random.Random(1))
