"""Calendar windows roll over at local midnight in the policy's timezone, DST included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate_contract.windows import window_bounds
from sluicegate_sidecar.budget import BudgetBook, Reservation
from tests.support.budget_samples import attribution, policy

TICK = timedelta(microseconds=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def test_day_in_new_york_lasts_23_hours_when_dst_starts_and_25_when_it_ends() -> None:
    start, end = window_bounds("day", "America/New_York", utc(2026, 3, 8, 12))
    assert (start, end) == (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))
    start, end = window_bounds("day", "America/New_York", utc(2026, 11, 1, 12))
    assert (start, end) == (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5))


def test_day_rolls_over_at_local_midnight_not_utc_midnight() -> None:
    tokyo_midnight = utc(2026, 11, 23, 15)  # 00:00 JST on the 24th
    assert window_bounds("day", "Asia/Tokyo", tokyo_midnight - TICK)[1] == tokyo_midnight
    assert window_bounds("day", "Asia/Tokyo", tokyo_midnight)[0] == tokyo_midnight


def test_week_starts_on_monday_local_midnight() -> None:
    # Sunday 2026-03-29 is the day Berlin moves to summer time: that week is 167 hours long.
    start, end = window_bounds("week", "Europe/Berlin", utc(2026, 3, 29, 12))
    assert start == utc(2026, 3, 22, 23)  # Monday 23 March, 00:00 CET
    assert end == utc(2026, 3, 29, 22)  # Monday 30 March, 00:00 CEST
    assert end - start == timedelta(hours=167)


def test_month_starts_on_the_first_at_local_midnight_and_december_rolls_into_january() -> None:
    start, end = window_bounds("month", "Europe/Berlin", utc(2026, 12, 31, 22, 59))
    assert (start, end) == (utc(2026, 11, 30, 23), utc(2026, 12, 31, 23))
    start, _ = window_bounds("month", "Europe/Berlin", utc(2026, 12, 31, 23))
    assert start == utc(2026, 12, 31, 23)


def test_a_midnight_skipped_by_dst_starts_the_day_at_the_transition() -> None:
    # Sao Paulo, 2018-11-04: clocks went from 00:00 straight to 01:00.
    start, end = window_bounds("day", "America/Sao_Paulo", utc(2018, 11, 4, 12))
    assert (start, end - start) == (utc(2018, 11, 4, 3), timedelta(hours=23))


def test_a_midnight_repeated_by_dst_starts_the_day_at_its_first_occurrence() -> None:
    # Havana, 2024-11-03: clocks went from 01:00 back to 00:00.
    start, end = window_bounds("day", "America/Havana", utc(2024, 11, 3, 12))
    assert (start, end - start) == (utc(2024, 11, 3, 4), timedelta(hours=25))


def test_a_calendar_day_skipped_by_a_zone_change_has_no_window() -> None:
    # Samoa skipped 2011-12-30 entirely: the 29th ends where the 31st begins.
    _, end_of_29th = window_bounds("day", "Pacific/Apia", utc(2011, 12, 29, 20))
    start_of_31st, _ = window_bounds("day", "Pacific/Apia", utc(2011, 12, 30, 20))
    assert end_of_29th == start_of_31st == utc(2011, 12, 30, 10)


def test_naive_time_and_unknown_zones_are_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_bounds("day", "UTC", datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="unknown timezone"):
        window_bounds("day", "../../etc/passwd", utc(2026, 1, 1))


def test_spend_resets_at_local_midnight_across_the_dst_change() -> None:
    book = BudgetBook([policy(amount=1_000, tz="America/New_York")])
    who = attribution()
    last_moment = utc(2026, 3, 9, 4) - TICK  # 23:59:59.999999 EDT on the 23-hour day
    reservation = book.reserve(who, 1_000, last_moment)
    assert isinstance(reservation, Reservation)
    book.settle(reservation, 1_000)
    assert book.headroom(who, last_moment) == 0
    assert book.headroom(who, utc(2026, 3, 9, 4)) == 1_000


def _local(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


ZONES = st.one_of(
    st.sampled_from(["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Sao_Paulo",
                     "America/Havana", "Pacific/Apia", "Asia/Kathmandu", "Pacific/Chatham"]),
    st.timezone_keys(),
)  # fmt: skip
INSTANTS = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(zone_name=ZONES, now=INSTANTS, kind=st.sampled_from(["day", "week", "month"]))
def test_windows_hold_now_begin_on_a_calendar_boundary_and_tile_time(
    zone_name: str, now: datetime, kind: str
) -> None:
    zone = ZoneInfo(zone_name)
    start, end = window_bounds(kind, zone_name, now)  # type: ignore[arg-type]
    assert start <= now < end
    first = _local(start, zone)
    assert _local(start - TICK, zone) < first  # the first instant of its first local day
    if kind == "week":
        assert first.weekday() == 0
    if kind == "month":
        assert first.day == 1
    assert window_bounds(kind, zone_name, end)[0] == end  # the next window starts where this one ends
    assert window_bounds(kind, zone_name, end - TICK) == (start, end)
