"""Calendar budget windows (day, week, month) in a policy's timezone, as UTC instants. Pure.

A window starts at the first instant whose local date is its first day, so a DST day lasts 23 or
25 hours and a day skipped by a zone change (Pacific/Apia, 2011-12-30) has no window of its own.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

WindowKind = Literal["day", "week", "month"]
_SECOND = timedelta(seconds=1)


def zone(tz_name: str) -> ZoneInfo:
    """The zone called ``tz_name``; raises ``ValueError`` naming it when unknown."""
    try:
        return ZoneInfo(tz_name)
    except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown timezone {tz_name!r}") from exc


def _first_day(kind: WindowKind, day: date) -> date:
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_first_day(kind: WindowKind, first: date) -> date:
    if kind == "day":
        return first + timedelta(days=1)
    if kind == "week":
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first UTC instant whose local date in ``tz`` is ``day`` or later."""
    candidates = [
        datetime(day.year, day.month, day.day, tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)
    ]
    low, high = min(candidates), max(candidates)
    if _local_date(low, tz) >= day:
        return low
    # Local midnight falls in a gap: search the transition between the two readings, to the second
    # (zone transitions fall on whole seconds).
    while high - low > _SECOND:
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if _local_date(middle, tz) >= day:
            high = middle
        else:
            low = middle
    return high


def window_bounds(kind: WindowKind, tz_name: str, now: datetime) -> tuple[datetime, datetime]:
    """The ``kind`` window holding ``now`` (an aware datetime) as ``(start, end)`` in UTC, end excluded."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = zone(tz_name)
    first = _first_day(kind, _local_date(now, tz))
    start = day_start(first, tz)
    end = day_start(_next_first_day(kind, first), tz)
    while now >= end:  # a clock set back across midnight repeats the end of a day already closed
        first = _next_first_day(kind, first)
        start, end = end, day_start(_next_first_day(kind, first), tz)
    return start, end


def window_label(day: date, window: WindowKind) -> str:
    """The calendar window holding ``day``, as reports name it: ``2026-03-01``, ``2026-W09``, ``2026-03``."""
    if window == "day":
        return day.isoformat()
    if window == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"
