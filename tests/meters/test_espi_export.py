"""The Green Button writer: a well-formed feed the project's own parser reads back exactly."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from decimal import Decimal

from defusedxml.ElementTree import fromstring

from meters.espi_export import (
    ESPI_NS,
    EspiSeries,
    EspiUsagePoint,
    IntervalValue,
    espi_write,
)
from meters.ingest.formats import espi
from meters.ingest.staging import StageRow
from meters.models import ImportBatch

HOUR0 = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp())


def _feed(point: EspiUsagePoint) -> bytes:
    out = io.BytesIO()
    espi_write(
        out,
        feed_id=str(uuid.uuid4()),
        title="Test & <feed>",
        updated=dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
        usage_points=[point],
    )
    return out.getvalue()


def test_litres_are_written_as_cubic_metres_and_read_back_as_the_same_litres() -> None:
    point_id = str(uuid.uuid4())
    values = [IntervalValue(HOUR0 + 3600 * i, 1000 + 7 * i, 0) for i in range(3)]
    data = _feed(
        EspiUsagePoint(point_id, "SP water", "water", [EspiSeries("import", "L", 3600, [values])])
    )
    root = fromstring(data)  # well-formed, and safe to parse
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    assert b"<espi:uom>42</espi:uom>" in data and b"<espi:powerOfTenMultiplier>-3<" in data
    rows = [r for r in espi.parse(io.BytesIO(data), ImportBatch()) if isinstance(r, StageRow)]
    assert [(r.serial, r.kind, r.unit, r.register_code, r.duration_s) for r in rows[:1]] == [
        (point_id, "water", "m3", "import-3600", 3600)
    ]
    assert [r.delta for r in rows] == [Decimal(v.value).scaleb(-3) for v in values]
    assert [r.ts for r in rows] == [
        dt.datetime.fromtimestamp(v.start + 3600, dt.UTC) for v in values
    ]


def test_export_hours_flow_in_reverse_and_estimates_carry_a_reading_quality() -> None:
    point = EspiUsagePoint(
        str(uuid.uuid4()),
        "SP solar",
        "electricity",
        [
            EspiSeries("import", "Wh", 3600, [[IntervalValue(HOUR0, 500, 500)]]),
            EspiSeries("export", "Wh", 3600, [[IntervalValue(HOUR0, 300, 100)], []]),
        ],
    )
    data = _feed(point)
    root = fromstring(data)
    qualities = [q.text for q in root.iter(f"{{{ESPI_NS}}}quality")]
    assert qualities == ["9", "13"]  # wholly estimated; partly estimated
    rows = [r for r in espi.parse(io.BytesIO(data), ImportBatch()) if isinstance(r, StageRow)]
    assert sorted((r.direction, r.register_code, r.delta) for r in rows) == [
        ("export", "export-3600", Decimal(300)),
        ("import", "import-3600", Decimal(500)),
    ]
