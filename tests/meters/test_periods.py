"""meters.periods: the period arithmetic of consumption, without a database.

Europe/London changes clocks on 2026-03-29 (a 23-hour day) and 2026-10-25 (25 hours).
"""

from __future__ import annotations

import ast
import datetime as dt
import zoneinfo
from pathlib import Path

import pytest

import meters.periods
from meters.periods import (
    ComparedSpan,
    ConsumptionPoint,
    GroupBy,
    Resolution,
    comparison_spans,
    custom_period,
    downsample,
    interval_starts,
    local_hours,
    on_grid,
    run_length,
    usage_period,
)

LONDON = "Europe/London"


def _utc(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


def test_the_module_reads_no_database() -> None:
    tree = ast.parse(Path(meters.periods.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in ("django", "meters", "psycopg")}


def test_a_day_across_the_spring_change_has_23_hours_of_quarter_hours() -> None:
    period = usage_period(span="day", last_day=dt.date(2026, 3, 29), time_zone=LONDON)
    assert (period.start, period.end) == (_utc(2026, 3, 29, 0), _utc(2026, 3, 29, 23))
    assert period.resolution == Resolution.QUARTER_HOUR
    assert (period.previous_start, period.previous_end) == (_utc(2026, 3, 28, 0), period.start)
    assert (
        len(
            interval_starts(
                start=period.start, end=period.end, resolution=period.resolution, time_zone=LONDON
            )
        )
        == 23 * 4
    )


def test_a_year_is_the_twelve_months_up_to_the_day_and_the_year_before() -> None:
    period = usage_period(span="year", last_day=dt.date(2026, 10, 25), time_zone="UTC")
    assert (period.start, period.end) == (_utc(2025, 11, 1), _utc(2026, 11, 1))
    assert (period.previous_start, period.previous_end) == (_utc(2024, 11, 1), _utc(2025, 11, 1))
    assert period.resolution == Resolution.MONTH


def test_an_unknown_span_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown span"):
        usage_period(span="fortnight", last_day=dt.date(2026, 1, 1), time_zone="UTC")


@pytest.mark.parametrize(
    ("days", "resolution"),
    [
        (1, Resolution.QUARTER_HOUR),
        (3, Resolution.QUARTER_HOUR),
        (4, Resolution.HOUR),
        (31, Resolution.HOUR),
        (32, Resolution.DAY),
        (400, Resolution.DAY),
        (401, Resolution.MONTH),
    ],
)
def test_a_custom_range_gets_the_finest_resolution_that_fits(
    days: int, resolution: Resolution
) -> None:
    first = dt.date(2026, 1, 1)
    period = custom_period(
        first_day=first, last_day=first + dt.timedelta(days=days - 1), time_zone="UTC"
    )
    assert period.resolution == resolution
    assert period.previous_end - period.previous_start == period.end - period.start


def test_month_starts_are_local_first_days() -> None:
    starts = interval_starts(
        start=_utc(2025, 11, 30, 16),
        end=_utc(2026, 2, 28, 16),
        resolution=Resolution.MONTH,
        time_zone="Asia/Taipei",
    )
    assert starts == [dt.date(2025, 12, 1), dt.date(2026, 1, 1), dt.date(2026, 2, 1)]


def test_downsampled_runs_keep_every_total_and_a_gap_moves_nothing() -> None:
    origin = _utc(2026, 5, 1)
    points = [
        ConsumptionPoint(origin + dt.timedelta(hours=h), 10, 1 if h == 1 else 0, 0)
        for h in (0, 1, 3)  # hour 2 missing
    ]
    runs = downsample(points, origin=origin, resolution=Resolution.HOUR, size=2, time_zone="UTC")
    assert runs == [
        ConsumptionPoint(origin, 20, 1, 0),
        ConsumptionPoint(origin + dt.timedelta(hours=2), 10, 0, 0),
    ]
    period = custom_period(
        first_day=dt.date(2026, 5, 1), last_day=dt.date(2026, 5, 31), time_zone="UTC"
    )
    assert run_length(period, max_points=400) == 2


def test_the_grid_fills_missing_intervals_with_empty_points() -> None:
    days = [dt.date(2026, 5, 1), dt.date(2026, 5, 2), dt.date(2026, 5, 3)]
    grid = on_grid([ConsumptionPoint(days[1], 5, 0, 0)], days)
    assert grid == [
        ConsumptionPoint(days[0], 0, 0, 0),
        ConsumptionPoint(days[1], 5, 0, 0),
        ConsumptionPoint(days[2], 0, 0, 0),
    ]


def test_the_31st_is_compared_with_all_of_february() -> None:
    now = dt.datetime(2026, 3, 31, 9, 30, tzinfo=zoneinfo.ZoneInfo(LONDON))
    this, last_month, year_ago = comparison_spans(local_now=now)
    assert this == ComparedSpan(dt.date(2026, 3, 1), dt.date(2026, 3, 31), dt.time(9, 30))
    assert last_month == ComparedSpan(dt.date(2026, 2, 1), dt.date(2026, 2, 28), None)
    assert last_month.whole_days_stop == dt.date(2026, 3, 1)
    assert year_ago == ComparedSpan(dt.date(2025, 3, 1), dt.date(2025, 3, 31), dt.time(9, 30))


@pytest.mark.parametrize(
    ("day", "group_by", "hours"),
    [
        (dt.date(2026, 3, 29), GroupBy.DAY, 23),
        (dt.date(2026, 10, 25), GroupBy.DAY, 25),
        (dt.date(2026, 3, 23), GroupBy.WEEK, 7 * 24 - 1),
        (dt.date(2026, 10, 1), GroupBy.MONTH, 31 * 24 + 1),
    ],
)
def test_local_periods_have_their_real_number_of_hours(
    day: dt.date, group_by: GroupBy, hours: int
) -> None:
    assert local_hours(day, group_by, zoneinfo.ZoneInfo(LONDON)) == hours
