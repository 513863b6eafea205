"""Validation, estimation and editing: each rule with injected cases."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from meters.models import (
    ImportBatch,
    Meter,
    MeterInstallation,
    Quality,
    ReadingConflict,
    Register,
    RollupDaily,
    RollupHourly,
    Rule,
    ServicePoint,
)
from tests.meters.helpers import csv_rows, quarter_hours, readings, readings_checksum, run_import

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)


def _series(serial: str, start: dt.datetime, values: list[float], **kw: str) -> str:
    return csv_rows(
        serial,
        [
            (ts.isoformat(), v)
            for ts, v in zip(quarter_hours(start, len(values)), values, strict=True)
        ],
        **kw,
    )


def _flags(rows: list[dict[str, object]]) -> list[Rule]:
    return [Rule(int(row["flags"])) for row in rows]  # type: ignore[call-overload]


def test_a_clean_series_imports_with_deltas_and_the_newest_pending() -> None:
    batch = run_import(_series("E1", T0, [100.0, 100.25, 100.5, 100.75]))
    assert (batch.status, batch.seen, batch.inserted, batch.rejected) == ("done", 4, 4, 0)
    rows = readings("E1")
    assert [r["value"] for r in rows] == [100_000, 100_250, 100_500, 100_750]
    assert [r["delta"] for r in rows] == [None, 250, 250, 250]
    assert [r["quality"] for r in rows] == [Quality.ACTUAL] * 3 + [Quality.PENDING]
    assert Register.objects.get(meter__serial="E1").interval_seconds == 900


def test_stabilisation_confirms_the_pending_reading_when_the_next_arrives() -> None:
    run_import(_series("E1", T0, [100.0, 100.25]))
    assert readings("E1")[-1]["quality"] == Quality.PENDING
    run_import(_series("E1", T0 + dt.timedelta(minutes=30), [100.5]))
    rows = readings("E1")
    assert [r["quality"] for r in rows] == [Quality.ACTUAL, Quality.ACTUAL, Quality.PENDING]
    assert rows[-1]["delta"] == 250


def test_duplicates_in_a_file_and_across_files_create_nothing() -> None:
    text = _series("E1", T0, [1.0, 1.25, 1.5])
    doubled = text + text.split("\n", 1)[1]  # every row twice
    batch = run_import(doubled)
    assert (batch.inserted, batch.duplicate) == (3, 3)
    checksum = readings_checksum()
    again = run_import(doubled)
    assert again.status == ImportBatch.Status.DUPLICATE and again.inserted == 0
    assert again.duplicate_of == batch
    forced = run_import(doubled, reprocess=True)
    assert (forced.inserted, forced.duplicate) == (0, 6)
    forced = run_import(text)
    assert (forced.inserted, forced.duplicate) == (0, 3)
    assert readings_checksum() == checksum


def test_a_different_value_for_the_same_time_is_kept_apart_and_flagged() -> None:
    run_import(_series("E1", T0, [1.0, 1.25, 1.5]))
    batch = run_import(_series("E1", T0 + dt.timedelta(minutes=15), [1.30]))
    assert (batch.inserted, batch.conflicting) == (0, 1)
    conflict = ReadingConflict.objects.get()
    assert (conflict.value, conflict.existing_value) == (1300, 1250)
    row = readings("E1")[1]
    assert row["value"] == 1250  # never silently overwritten
    assert row["quality"] == Quality.SUSPECT and Rule.CONFLICT in Rule(row["flags"])


def test_conflicting_rows_inside_one_file_keep_the_first_and_flag_it() -> None:
    text = (
        _series("E1", T0, [1.0, 1.25])
        + f"E1,{(T0 + dt.timedelta(minutes=15)).isoformat()},1.40,kWh,electricity\n"
    )
    batch = run_import(text)
    assert (batch.inserted, batch.conflicting) == (2, 1)
    assert Rule.CONFLICT in Rule(readings("E1")[1]["flags"])


def test_a_short_gap_is_estimated_by_linear_interpolation() -> None:
    ts = quarter_hours(T0, 6)
    text = csv_rows(
        "E1",
        [
            (ts[0].isoformat(), 10.0),
            (ts[1].isoformat(), 10.1),
            (ts[4].isoformat(), 10.4),
            (ts[5].isoformat(), 10.5),
        ],
    )
    batch = run_import(text)
    assert (batch.inserted, batch.estimated) == (6, 2)
    rows = readings("E1")
    assert [r["value"] for r in rows] == [10_000, 10_100, 10_200, 10_300, 10_400, 10_500]
    assert [r["quality"] for r in rows[2:4]] == [Quality.ESTIMATED] * 2
    assert all(Rule.ESTIMATED in Rule(r["flags"]) for r in rows[2:4])
    assert [r["delta"] for r in rows[1:]] == [100] * 5  # the consumption is not double counted


def test_a_long_gap_is_never_zero_filled_but_flagged() -> None:
    text = csv_rows(
        "E1",
        [
            (T0.isoformat(), 10.0),
            ((T0 + dt.timedelta(minutes=15)).isoformat(), 10.1),
            ((T0 + dt.timedelta(hours=4)).isoformat(), 11.0),
        ],
    )
    batch = run_import(text)
    assert batch.estimated == 0
    rows = readings("E1")
    assert len(rows) == 3 and Rule.GAP in Rule(rows[2]["flags"])
    assert rows[2]["delta"] == 900  # known in total, spread over the gap's hours
    hours = RollupHourly.objects.order_by("hour").values_list("consumption", flat=True)
    assert sum(hours) == 1000 and len(hours) == 4  # 00:00 to 04:00


def test_an_estimate_is_replaced_when_the_actual_reading_arrives() -> None:
    _meter("E1")
    ts = quarter_hours(T0, 4)
    run_import(
        csv_rows("E1", [(ts[0].isoformat(), 10.0), (ts[3].isoformat(), 10.3)]),
        register_meters=False,
    )
    assert readings("E1")[1]["quality"] == Quality.ESTIMATED
    batch = run_import(csv_rows("E1", [(ts[1].isoformat(), 10.15)]), register_meters=False)
    # The actual reading, and the remaining estimate made again around it.
    assert (batch.inserted, batch.estimated, batch.conflicting) == (2, 1, 0)
    rows = readings("E1")
    assert [r["value"] for r in rows] == [10_000, 10_150, 10_225, 10_300]
    assert rows[1]["quality"] == Quality.ACTUAL and rows[2]["quality"] == Quality.ESTIMATED
    assert [r["delta"] for r in rows[1:]] == [150, 75, 75]


def _meter(serial: str, *, dials: int | None = None, tz: str = "UTC") -> Register:
    sp = ServicePoint.objects.create(code=f"SP-{serial}", kind="electricity", time_zone=tz)
    meter = Meter.objects.create(serial=serial, kind="electricity", max_rate=50_000)
    MeterInstallation.objects.create(
        meter=meter, service_point=sp, installed_at=T0 - dt.timedelta(days=400)
    )
    register = Register(
        meter=meter,
        code="import",
        unit="Wh",
        dials=dials,
        display_unit="kWh",
        is_main=True,
        interval_seconds=900,
    )
    register.full_clean()
    register.save()
    return register


def test_a_register_rolling_over_its_dials_is_recognised() -> None:
    register = _meter("E9", dials=6)
    assert register.wrap_value == 1_000_000_000
    run_import(_series("E9", T0, [999_999.5, 999_999.9, 0.3, 0.7]), register_meters=False)
    rows = readings("E9")
    assert [r["delta"] for r in rows] == [None, 400, 400, 400]
    assert Rule.ROLLOVER in Rule(rows[2]["flags"]) and rows[2]["quality"] == Quality.ACTUAL


def test_a_register_going_back_without_rollover_is_a_reset() -> None:
    run_import(_series("E1", T0, [500.0, 500.5, 10.0, 10.5]))
    rows = readings("E1")
    assert Rule.RESET in Rule(rows[2]["flags"])
    assert rows[2]["quality"] == Quality.SUSPECT and rows[2]["delta"] is None
    assert rows[3]["delta"] == 500  # the series goes on from the new base


def test_a_meter_exchange_between_readings_is_not_negative_consumption() -> None:
    run_import(_series("E1", T0, [500.0, 500.5]))
    meter = Meter.objects.get(serial="E1")
    old = MeterInstallation.objects.get(meter=meter)
    exchange = T0 + dt.timedelta(minutes=20)
    old.removed_at = exchange
    old.save()
    elsewhere = ServicePoint.objects.create(code="SP-B", kind="electricity")
    MeterInstallation.objects.create(meter=meter, service_point=elsewhere, installed_at=exchange)
    run_import(_series("E1", T0 + dt.timedelta(minutes=30), [0.2, 0.45]), register_meters=False)
    rows = readings("E1")
    assert Rule.METER_EXCHANGE in Rule(rows[2]["flags"])
    assert rows[2]["delta"] is None and rows[2]["quality"] != Quality.SUSPECT
    assert rows[3]["delta"] == 250


def test_negative_interval_consumption_is_suspect() -> None:
    batch = run_import(_series("W1", T0, [5, -3, 4], unit="L", kind="water", column="delta"))
    rows = readings("W1")
    assert batch.inserted == 3
    assert Rule.NEGATIVE in Rule(rows[1]["flags"]) and rows[1]["quality"] == Quality.SUSPECT


def test_a_spike_beyond_the_physical_maximum_is_suspect_and_left_out_of_rollups() -> None:
    run_import(_series("W1", T0, [5, 5, 90_000, 5], unit="L", kind="water", column="delta"))
    rows = readings("W1")
    assert Rule.SPIKE in Rule(rows[2]["flags"]) and rows[2]["quality"] == Quality.SUSPECT
    totals = RollupHourly.objects.values_list("consumption", "suspect_count")
    assert sum(c for c, _ in totals) == 15 and sum(s for _, s in totals) == 1


def test_a_stuck_register_is_flagged_after_its_threshold() -> None:
    values = [1000.0] * (4 * 26)
    run_import(_series("E1", T0, values))
    rows = readings("E1")
    stuck = [i for i, r in enumerate(rows) if Rule.STUCK in Rule(r["flags"])]
    assert stuck and stuck[0] == 4 * 24  # from 24 hours unchanged
    assert all(rows[i]["quality"] == Quality.SUSPECT for i in stuck)


def test_future_timestamps_are_rejected_with_a_row_error() -> None:
    future = (dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(hours=2)).isoformat()
    text = _series("E1", T0, [1.0]) + f"E1,{future},2.0,kWh,electricity\n"
    batch = run_import(text)
    assert (batch.inserted, batch.rejected) == (1, 1)
    error = batch.row_errors.get()
    assert error.line == 3 and "in the future" in error.text


def test_a_timestamp_off_the_interval_grid_is_clock_skew() -> None:
    ts = quarter_hours(T0, 4)
    rows = [(t.isoformat(), 1.0 + i / 4) for i, t in enumerate(ts)]
    rows.append(((ts[-1] + dt.timedelta(minutes=22)).isoformat(), 2.5))
    run_import(csv_rows("E1", rows))
    flagged = [Rule.CLOCK_SKEW in Rule(r["flags"]) for r in readings("E1")]
    assert flagged == [False, False, False, False, True]


@pytest.mark.parametrize(
    ("day", "hours"), [(dt.date(2026, 3, 29), 23), (dt.date(2026, 10, 25), 25)]
)
def test_dst_days_have_23_or_25_hours_and_no_false_gaps(day: dt.date, hours: int) -> None:
    import zoneinfo

    amsterdam = zoneinfo.ZoneInfo("Europe/Amsterdam")
    start = dt.datetime.combine(day, dt.time(), amsterdam).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), amsterdam).astimezone(dt.UTC)
    count = int((end - start).total_seconds() // 900)
    _meter("E1", tz="Europe/Amsterdam")
    # From the last reading of the day before to the first of the day after.
    text = _series("E1", start - dt.timedelta(minutes=15), [float(i) / 4 for i in range(count + 2)])
    batch = run_import(text, register_meters=False)
    assert batch.estimated == 0 and count == hours * 4
    rows = readings("E1")
    assert not any(
        Rule.GAP in Rule(r["flags"]) or Rule.CLOCK_SKEW in Rule(r["flags"]) for r in rows
    )
    daily = RollupDaily.objects.get(day=day)
    assert daily.hours == hours
    assert daily.consumption == count * 250


# --- Out of order: readings that arrive later change what was decided before ----------------


def _state(serial: str) -> list[tuple[object, ...]]:
    return [(r["ts"], r["value"], r["delta"], r["quality"], r["flags"]) for r in readings(serial)]


@pytest.mark.parametrize("later", ["after", "before"])
def test_estimates_are_made_again_when_a_neighbouring_reading_arrives_later(later: str) -> None:
    ts = quarter_hours(dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC), 7)
    values = [10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.6]
    have = [0, 1, 2, 5] if later == "before" else [1, 2, 5, 6]
    missing = 0 if later == "before" else 6
    rows = [(ts[i].isoformat(), values[i]) for i in have if i != missing]
    run_import(csv_rows("E1", rows))
    run_import(csv_rows("E1", [(ts[missing].isoformat(), values[missing])]), register_meters=False)
    qualities = {r["ts"]: r["quality"] for r in readings("E1")}
    assert qualities[ts[3]] == qualities[ts[4]] == Quality.ESTIMATED
    in_order = _state("E1")
    RollupHourly.objects.all().delete()
    # The same readings in one file give the same state.
    run_import(csv_rows("E2", [(ts[i].isoformat(), values[i]) for i in sorted({*have, missing})]))
    assert [row[1:] for row in _state("E2")] == [row[1:] for row in in_order]


def test_a_stuck_run_across_two_files_is_flagged_whatever_the_order() -> None:
    ts = quarter_hours(T0, 4 * 40)
    values = [1.0 + min(i, 8) / 4 for i in range(len(ts))]  # moves for 2 h, then stands still
    rows = [(t.isoformat(), v) for t, v in zip(ts, values, strict=True)]
    run_import(csv_rows("E1", rows[48:]))  # the later file first
    run_import(csv_rows("E1", rows[:48]))
    run_import(csv_rows("E2", rows[:48]))
    run_import(csv_rows("E2", rows[48:]))
    assert [row[1:] for row in _state("E1")] == [row[1:] for row in _state("E2")]
    stuck = [r for r in readings("E1") if Rule.STUCK in Rule(r["flags"])]
    assert len(stuck) == len(ts) - 8 - 4 * 24


def test_a_register_with_readings_cannot_be_deleted() -> None:
    # Readings keep their register through a trigger, not a foreign key (migration 0005).
    run_import(_series("G1", T0, [1.0, 1.25]))
    register = Register.objects.get(meter__serial="G1")
    with pytest.raises(IntegrityError, match="has readings"), transaction.atomic():
        register.delete()
    assert len(readings("G1")) == 2
