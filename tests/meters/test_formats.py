"""The real sample files import with the right counts, units and values."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from meters.models import ImportBatch, Meter, MeterEvent, Register
from tests.meters.helpers import readings, run_import

DATA = Path(__file__).resolve().parents[1] / "data"
pytestmark = pytest.mark.django_db
UTC = dt.UTC
US_THERM_WH = Decimal(105_480_400) / Decimal(3600)


def _file(*parts: str) -> bytes:
    return DATA.joinpath(*parts).read_bytes()


def _batch_rows(
    batch: ImportBatch,
) -> list[tuple[str, str, str, str, dt.datetime, int | None, int | None]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.serial, m.kind, r.code, r.unit, e.ts, e.value, e.delta "
            "FROM meters_reading e JOIN meters_register r ON r.id = e.register_id "
            "JOIN meters_meter m ON m.id = r.meter_id WHERE e.batch_id = %s "
            "ORDER BY m.serial, r.code, e.ts",
            [batch.pk],
        )
        return list(cursor.fetchall())


# --- DSMR P1 --------------------------------------------------------------------------------


def test_dsmr_5_electricity_tariffs_and_gas() -> None:
    batch = run_import(_file("dsmr", "TELEGRAM_V5.txt"), "dsmr")
    assert (batch.status, batch.inserted, batch.rejected) == ("done", 5, 0)
    at = dt.datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC)  # 19:20:02 W(inter) = CET
    assert _batch_rows(batch) == [
        (
            "2222ABCD123456789",
            "gas",
            "24.2.1",
            "L",
            dt.datetime(2017, 1, 2, 15, 10, 5, tzinfo=UTC),
            107,
            None,
        ),
        ("K8EG004046395507", "electricity", "1.8.1", "Wh", at, 4426, None),
        ("K8EG004046395507", "electricity", "1.8.2", "Wh", at, 2399, None),
        ("K8EG004046395507", "electricity", "2.8.1", "Wh", at, 2444, None),
        ("K8EG004046395507", "electricity", "2.8.2", "Wh", at, 0, None),
    ]
    registers = {r.code: r for r in Register.objects.filter(meter__serial="K8EG004046395507")}
    assert (registers["1.8.1"].direction, registers["1.8.1"].tariff_rate) == ("import", 1)
    assert (registers["2.8.2"].direction, registers["2.8.2"].tariff_rate) == ("export", 2)
    assert (
        registers["1.8.1"].is_main
        and Meter.objects.get(serial="K8EG004046395507").communication == "p1"
    )


def test_dsmr_summer_time_flag_and_two_mbus_channels() -> None:
    batch = run_import(_file("dsmr", "TELEGRAM_V5_TWO_MBUS.txt"), "dsmr")
    rows = _batch_rows(batch)
    assert (
        "G0039001936990619",
        "gas",
        "24.2.1",
        "L",
        dt.datetime(2020, 4, 26, 20, 30, 1, tzinfo=UTC),
        246_138,
        None,
    ) in rows  # 22:30:01 S
    assert [r[5] for r in rows if r[2] == "1.8.1"] == [2_130_115]
    # Channel 1 has no identifier and a placeholder reading: a clear row error, not a meter.
    assert batch.rejected == 1
    assert "M-Bus channel 1" in batch.row_errors.get().text


def test_dsmr_fluvius_gas_and_water_channels() -> None:
    batch = run_import(_file("dsmr", "TELEGRAM_FLUVIUS_V171.txt"), "dsmr")
    rows = {(r[0], r[2]): r for r in _batch_rows(batch)}
    assert rows[("1SAG3101021605", "1.8.2")][5] == 15_758
    assert rows[("1SAG3101021605", "2.8.2")][5] == 11
    gas = rows[("7FLO2119033733", "24.2.3")]  # the channel says 24.2.3 (issue 11)
    water = rows[("8SAG1234567890", "24.2.1")]
    assert (gas[1], gas[3], gas[5]) == ("gas", "L", 112_384)
    assert (water[1], water[3], water[5]) == ("water", "L", 872_234)
    assert water[4] == dt.datetime(2020, 5, 12, 11, 45, 58, tzinfo=UTC)


def test_dsmr_4_2_with_its_placeholder_power_failure_log() -> None:
    batch = run_import(_file("dsmr", "TELEGRAM_V4_2.txt"), "dsmr")
    rows = _batch_rows(batch)
    assert [r[5] for r in rows if r[1] == "electricity"] == [1_581_123, 1_435_706, 0, 0]
    assert [r[5] for r in rows if r[1] == "gas"] == [981_443]
    # Three log slots hold the meter's default clock: empty slots, neither outages nor
    # rejected rows, so the telegram imports as done.
    assert (batch.status, batch.rejected, batch.row_error_count) == ("done", 0, 0)
    assert not MeterEvent.objects.filter(kind="power_outage").exists()


@pytest.mark.parametrize("name", ["TELEGRAM_V2_2.txt", "TELEGRAM_V3.txt"])
def test_dsmr_2_and_3_need_a_read_time_for_electricity(name: str) -> None:
    without = run_import(_file("dsmr", name), "dsmr")
    assert without.rejected == 1
    assert "--read-at" in without.row_errors.get().text
    assert without.inserted == 1  # the gas reading has its own timestamp
    read_at = dt.datetime(2016, 11, 7, 18, 5, tzinfo=UTC)
    with_time = run_import(_file("dsmr", name), "dsmr", read_at=read_at, reprocess=True)
    electricity = [r for r in _batch_rows(with_time) if r[1] == "electricity"]
    assert len(electricity) == 4 and {r[4] for r in electricity} == {read_at}
    expected = 1_001 if name == "TELEGRAM_V2_2.txt" else 12_345_678
    assert {r[5] for r in electricity} == {expected}


# --- Green Button ESPI ----------------------------------------------------------------------


def _espi_values(name: str) -> list[int]:
    return [
        int(v)
        for v in re.findall(r"<(?:\w+:)?value>(-?\d+)</", _file("greenbutton", name).decode())
    ]


def test_espi_hourly_electricity_nine_days() -> None:
    batch = run_import(_file("greenbutton", "TestGBDataHourlyNineDaysBinnedDaily.xml"), "espi")
    assert (batch.status, batch.seen, batch.inserted, batch.rejected) == ("done", 216, 216, 0)
    rows = _batch_rows(batch)
    assert {r[3] for r in rows} == {"Wh"} and {r[1] for r in rows} == {"electricity"}
    assert sum(r[6] or 0 for r in rows) == 199_563
    first, last = min(r[4] for r in rows), max(r[4] for r in rows)
    # Local midnight 2014-01-01 US Eastern is 05:00 UTC; a reading's time is its interval's end.
    assert first == dt.datetime(2014, 1, 1, 6, tzinfo=UTC)
    assert last == dt.datetime(2014, 1, 10, 5, tzinfo=UTC)
    assert Register.objects.get(meter__serial=rows[0][0]).interval_seconds == 3600


def test_espi_containerized_electricity() -> None:
    batch = run_import(_file("greenbutton", "electric_containerized.xml"), "espi")
    rows = _batch_rows(batch)
    assert batch.inserted == 8
    deltas = sorted(r[6] or 0 for r in rows)
    assert deltas == sorted(_espi_values("electric_containerized.xml"))[:8]
    assert (deltas[0], deltas[-1]) == (410, 611)


@pytest.mark.parametrize(
    "name",
    [
        "gas_direct.xml",
        "ngma_natural_gas_billing_billing_data_Service_1_1_2021-05-26_to_2024-04-25.xml",
    ],
)
def test_espi_gas_in_therms_becomes_energy(name: str) -> None:
    batch = run_import(_file("greenbutton", name), "espi")
    values = _espi_values(name)
    rows = _batch_rows(batch)
    assert batch.inserted == len(values) == len(rows)
    assert {r[1] for r in rows} == {"gas"} and {r[3] for r in rows} == {"Wh"}
    # therm x 10^-3 → Wh, rounded half up per reading
    expected = [
        int((Decimal(v) / 1000 * US_THERM_WH).to_integral_value("ROUND_HALF_UP")) for v in values
    ]
    assert sorted(r[6] or 0 for r in rows) == sorted(expected)
    assert 410_202 in expected  # 14 therm


def test_espi_gas_without_a_unit_is_rejected_row_by_row() -> None:
    batch = run_import(_file("greenbutton", "gas_containerized.xml"), "espi")
    assert (batch.status, batch.seen, batch.inserted, batch.rejected) == ("rejected", 3, 0, 3)
    assert {e.text for e in batch.row_errors.all()} == {
        "its ReadingType has no unit of measure (uom)"
    }


# --- ChirpStack and JSON --------------------------------------------------------------------


def _uplink(dev_eui: str, when: str, obj: dict[str, object], dedup: str = "d1") -> str:
    return json.dumps(
        {
            "event": "up",
            "received_at": when,
            "payload": {
                "deduplicationId": dedup,
                "time": when,
                "fCnt": 7,
                "deviceInfo": {"devEui": dev_eui, "deviceName": "water meter"},
                "object": obj,
            },
        }
    )


def test_chirpstack_uplinks_status_and_alarms() -> None:
    meter = Meter.objects.create(
        serial="W-LORA-1", kind="water", dev_eui="0102030405060708", max_rate=5000
    )
    Register.objects.create(meter=meter, code="import", unit="L", is_main=True)
    lines = [
        _uplink(
            "0102030405060708",
            "2026-10-01T10:00:00Z",
            {"readings": [{"value": 12.345, "unit": "m3"}]},
        ),
        _uplink(
            "0102030405060708",
            "2026-10-01T11:00:00Z",
            {"value": 12.400, "unit": "m3", "alarms": ["leak"]},
            "d2",
        ),
        json.dumps(
            {
                "event": "status",
                "payload": {
                    "deduplicationId": "s1",
                    "time": "2026-10-01T11:05:00Z",
                    "deviceInfo": {"devEui": "0102030405060708"},
                    "batteryLevel": 12.5,
                    "margin": 7,
                },
            }
        ),
    ]
    batch = run_import("\n".join(lines), "chirpstack", register_meters=False)
    assert (batch.status, batch.inserted, batch.rejected) == ("done", 2, 0)
    assert [r["value"] for r in readings("W-LORA-1")] == [12_345, 12_400]
    meter.refresh_from_db()
    assert meter.battery_percent == 13  # 12.5 % rounded
    # The status report at 11:05 is the latest contact.
    assert meter.last_contact_at == dt.datetime(2026, 10, 1, 11, 5, tzinfo=UTC)
    assert set(MeterEvent.objects.values_list("kind", flat=True)) == {"leak", "battery_low"}


def test_json_bulk_readings() -> None:
    body = {
        "readings": [
            {
                "meter": "J1",
                "timestamp": "2026-10-01T00:15:00+02:00",
                "delta": 0.25,
                "unit": "kWh",
                "duration": 900,
                "kind": "electricity",
            },
            {
                "meter": "J1",
                "timestamp": "2026-10-01T00:30:00+02:00",
                "delta": 0.5,
                "unit": "kWh",
                "duration": 900,
                "kind": "electricity",
                "flags": ["tamper_cover"],
            },
        ]
    }
    batch = run_import(json.dumps(body), "json")
    assert (batch.status, batch.inserted) == ("done", 2)
    rows = readings("J1")
    assert [(r["delta"], r["start_ts"]) for r in rows] == [
        (250, dt.datetime(2026, 9, 30, 22, 0, tzinfo=UTC)),
        (500, dt.datetime(2026, 9, 30, 22, 15, tzinfo=UTC)),
    ]
    assert MeterEvent.objects.get().kind == "tamper_cover"


def test_the_import_readings_command_prints_the_counts(tmp_path: Path) -> None:
    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "readings.csv"
    path.write_text(
        "meter_serial,timestamp,value,unit,kind\n"
        "C1,2026-01-01T00:15:00Z,1.0,kWh,electricity\nC1,2026-01-01T00:30:00Z,1.5,kWh,electricity\n"
        "C2,2026-01-01T00:30:00Z,1.5,kWh,electricity\n"
    )
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("import_readings", str(path), "--inline", stdout=out, stderr=StringIO())
    assert exited.value.code == 4  # every row rejected
    counts = json.loads(out.getvalue())
    assert counts["status"] == "rejected"
    assert (
        counts["seen"],
        counts["inserted"],
        counts["duplicate"],
        counts["conflicting"],
        counts["rejected"],
    ) == (3, 0, 0, 0, 3)  # unknown meters without --register-meters
    out = StringIO()
    call_command(
        "import_readings", str(path), "--inline", "--register-meters", "--reprocess", stdout=out
    )
    assert json.loads(out.getvalue())["inserted"] == 3
