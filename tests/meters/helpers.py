"""Running imports in tests: straight through the services, in the test's transaction."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.utils import timezone

from meters.ingest import pipeline
from meters.models import ImportBatch
from meters.services import imports as import_services
from portal.tenancy.models import Organisation
from tests.factories import SYSTEM

RECEIVED = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def run_import(
    content: str | bytes,
    fmt: str = "csv",
    *,
    register_meters: bool = True,
    read_at: dt.datetime | None = None,
    organisation: Organisation | None = None,
    reprocess: bool = False,
    received: dt.datetime = RECEIVED,
    source: str = ImportBatch.Source.COMMAND,
    meter_serial: str = "",
    dsmr_spec: str = "",
) -> ImportBatch:
    """Create a batch from `content` and run it to its end in this process."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    batch = import_services.batch_create(
        source=source,
        fmt=fmt,
        content=io.BytesIO(data),
        actor=SYSTEM,
        original_name=f"test.{fmt}",
        organisation=organisation,
        register_meters=register_meters,
        read_at=read_at,
        reprocess=reprocess,
        as_of=received,
        meter_serial=meter_serial,
        dsmr_spec=dsmr_spec,
    )
    if batch.status == ImportBatch.Status.QUEUED:
        pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    return batch


def readings(serial: str, code: str | None = None) -> list[dict[str, Any]]:
    """Return a meter's readings (one register, or its main one) in time order."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.ts, e.start_ts, e.value, e.delta, e.quality, e.flags, r.code
            FROM meters_reading e JOIN meters_register r ON r.id = e.register_id
            JOIN meters_meter m ON m.id = r.meter_id
            WHERE m.serial = %s AND (r.code = %s OR (%s IS NULL AND r.is_main))
            ORDER BY e.ts
            """,
            [serial, code, code],
        )
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def csv_rows(
    serial: str,
    rows: Sequence[tuple[str, object]],
    *,
    unit: str = "kWh",
    kind: str = "electricity",
    column: str = "value",
) -> str:
    """A CSV with one meter's (timestamp, number) rows."""
    lines = [f"meter_serial,timestamp,{column},unit,kind"]
    lines += [f"{serial},{ts},{number},{unit},{kind}" for ts, number in rows]
    return "\n".join(lines) + "\n"


def quarter_hours(start: dt.datetime, count: int) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=15 * i) for i in range(count)]


def readings_checksum() -> str:
    """Return an md5 over the whole readings table in key order (re-import checks)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT md5(coalesce(string_agg(concat_ws(',', register_id, ts, start_ts, value, "
            "delta, quality, flags), ';' ORDER BY register_id, ts), '')) FROM meters_reading"
        )
        (digest,) = cursor.fetchone()
    return str(digest)
