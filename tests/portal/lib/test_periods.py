"""The calendar arithmetic every page, bill and charge shares (portal.lib.periods)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from portal.lib import periods

UTC = dt.UTC


def test_local_midnight_is_in_utc() -> None:
    assert periods.local_midnight(dt.date(2026, 3, 1), "Asia/Taipei") == dt.datetime(
        2026, 2, 28, 16, tzinfo=UTC
    )


def test_a_zone_object_and_its_name_agree() -> None:
    day = dt.date(2026, 7, 4)
    assert periods.local_midnight(day, zoneinfo.ZoneInfo("Europe/Amsterdam")) == (
        periods.local_midnight(day, "Europe/Amsterdam")
    )


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        (dt.date(2026, 3, 29), 23),  # Amsterdam springs forward
        (dt.date(2026, 10, 25), 25),  # and falls back
        (dt.date(2026, 6, 1), 24),
    ],
)
def test_local_days_have_the_hours_the_clock_gives_them(day: dt.date, hours: int) -> None:
    assert periods.hours_in_local_day(day, "Europe/Amsterdam") == hours


def test_a_day_whose_midnight_does_not_exist_starts_when_the_clocks_jump() -> None:
    # Santiago, 2026-09-06: clocks jump from 00:00 to 01:00 (-04 to -03).
    start, end = periods.local_day_bounds(dt.date(2026, 9, 6), "America/Santiago")
    assert start == dt.datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert start.astimezone(zoneinfo.ZoneInfo("America/Santiago")).hour == 1
    assert (end - start) == dt.timedelta(hours=23)


def test_bounds_of_consecutive_days_meet() -> None:
    zone = "Europe/London"
    day = dt.date(2026, 10, 24)
    for _ in range(3):
        _, end = periods.local_day_bounds(day, zone)
        day += dt.timedelta(days=1)
        assert periods.local_day_bounds(day, zone)[0] == end


def test_local_date_needs_an_aware_moment() -> None:
    assert periods.local_date(dt.datetime(2026, 12, 31, 17, tzinfo=UTC), "Asia/Taipei") == (
        dt.date(2027, 1, 1)
    )
    with pytest.raises(ValueError, match="aware"):
        periods.local_date(dt.datetime(2026, 1, 1), "Asia/Taipei")  # noqa: DTZ001


@pytest.mark.parametrize(
    ("day", "start", "following", "before"),
    [
        (dt.date(2026, 1, 31), dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2025, 12, 1)),
        (dt.date(2026, 12, 1), dt.date(2026, 12, 1), dt.date(2027, 1, 1), dt.date(2026, 11, 1)),
        (dt.date(2028, 2, 29), dt.date(2028, 2, 1), dt.date(2028, 3, 1), dt.date(2028, 1, 1)),
    ],
)
def test_months(day: dt.date, start: dt.date, following: dt.date, before: dt.date) -> None:
    assert periods.month_start(day) == start
    assert periods.next_month(day) == following
    assert periods.previous_month(day) == before
    assert periods.add_months(day, 1) == following
    assert periods.add_months(day, -1) == before
    assert periods.add_months(day, 0) == start


def test_add_months_crosses_years_both_ways() -> None:
    assert periods.add_months(dt.date(2026, 5, 17), 20) == dt.date(2028, 1, 1)
    assert periods.add_months(dt.date(2026, 5, 17), -17) == dt.date(2024, 12, 1)


def test_days_in_month() -> None:
    assert [periods.days_in_month(dt.date(2028, m, 1)) for m in (1, 2, 4, 12)] == [31, 29, 30, 31]


def test_a_local_month_is_the_sum_of_its_days() -> None:
    zone = "Europe/Amsterdam"
    start, end = periods.local_month_bounds(dt.date(2026, 3, 15), zone)
    hours = sum(periods.hours_in_local_day(dt.date(2026, 3, d), zone) for d in range(1, 32))
    assert end - start == dt.timedelta(hours=hours) == dt.timedelta(hours=31 * 24 - 1)
    assert periods.local_days_bounds(dt.date(2026, 3, 1), dt.date(2026, 3, 31), zone) == (
        start,
        end,
    )
