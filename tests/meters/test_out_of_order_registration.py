"""Readings older than an auto-registered meter's installation, arriving in a later file,
are rolled up like the rest (found by make verify's overlapping-imports scenario, issue 12)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from meters.models import ImportBatch, MeterInstallation
from tests.meters.helpers import run_import

pytestmark = pytest.mark.django_db
START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def _csv(first: int, last: int, serial: str = "OOO-1") -> str:
    lines = ["meter_serial,timestamp,value,unit,kind"]
    value = 1000.0
    for q in range(last):
        value += 0.25
        if q >= first:
            ts = START + dt.timedelta(minutes=15 * q)
            lines.append(f"{serial},{ts:%Y-%m-%dT%H:%M:%SZ},{value:.3f},kWh,electricity")
    return "\n".join(lines) + "\n"


def _rollups(serial: str) -> tuple[int, int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT coalesce(sum(consumption), 0) FROM meters_rolluphourly h"
            "        JOIN meters_servicepoint sp ON sp.id = h.service_point_id"
            "        WHERE sp.code = %(sp)s),"
            " (SELECT count(*) FROM meters_rolluphourly h"
            "  JOIN meters_servicepoint sp ON sp.id = h.service_point_id WHERE sp.code = %(sp)s),"
            " (SELECT coalesce(sum(consumption), 0) FROM meters_rollupdaily d"
            "  JOIN meters_servicepoint sp ON sp.id = d.service_point_id WHERE sp.code = %(sp)s)",
            {"sp": f"SP-{serial}"},
        )
        row = cursor.fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


def test_older_readings_in_a_later_file_are_rolled_up_like_a_single_file() -> None:
    assert run_import(_csv(0, 4 * 48, "WHOLE-1")).status == ImportBatch.Status.DONE
    whole = _rollups("WHOLE-1")
    assert whole[1] == 48

    later = run_import(_csv(4 * 24, 4 * 48))
    earlier = run_import(_csv(0, 4 * 24 + 4))
    assert (later.status, earlier.status) == ("done", "done")
    assert earlier.inserted == 4 * 24 and earlier.duplicate == 4
    installation = MeterInstallation.objects.get(meter__serial="OOO-1")
    assert installation.installed_at == START - dt.timedelta(seconds=1)
    assert _rollups("OOO-1") == whole


def test_an_installation_staff_placed_does_not_move() -> None:
    run_import(_csv(4 * 24, 4 * 48))
    installed = START + dt.timedelta(hours=23)
    MeterInstallation.objects.filter(meter__serial="OOO-1").update(installed_at=installed)
    run_import(_csv(0, 4 * 24 + 4))
    assert MeterInstallation.objects.get(meter__serial="OOO-1").installed_at == installed
