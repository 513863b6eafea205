"""Hostile and broken files: each fails its batch with a clear, stored message, and nothing at
all is imported from it (no readings, no meters, no events)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import pytest
from django.db import connection

from meters.ingest import pipeline
from meters.models import ImportBatch, Meter, MeterEvent, Register, ServicePoint
from tests.meters.helpers import run_import

pytestmark = pytest.mark.django_db
HEADER = "meter_serial,timestamp,value,unit,kind\n"
GOOD = "H1,2026-03-01T00:15:00Z,1.0,kWh,electricity\n"


def _nothing_imported() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM meters_reading")
        assert cursor.fetchone() == (0,)
    assert Meter.objects.count() == ServicePoint.objects.count() == MeterEvent.objects.count() == 0


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>&xxe;</title></entry></feed>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol3;</title></feed>"""

GZIP_BOMB = gzip.compress(b"\0" * (10 * 1024 * 1024))
ZIP_HEADER = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4

CASES: list[tuple[str, str, bytes, str]] = [
    (
        "json-deep-nesting",
        "json",
        b'{"readings": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "nested too deeply",
    ),
    ("ndjson-deep-nesting", "json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (
        "chirpstack-deep-nesting",
        "chirpstack",
        b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        "nested too deeply",
    ),
    ("gzip-bomb-named-csv", "csv", GZIP_BOMB, "UTF-8"),
    ("zip-named-csv", "csv", ZIP_HEADER, "not CSV text"),
    ("gzip-bomb-named-json", "json", GZIP_BOMB, "not JSON"),
    ("csv-utf16", "csv", (HEADER + GOOD).encode("utf-16"), "UTF-8"),
    ("xml-utf32-lie", "espi", b'<?xml version="1.0" encoding="UTF-32"?><feed/>', "XML"),
    ("dsmr-binary", "dsmr", bytes(range(256)) * 8, "text before the first telegram"),
    ("xxe", "espi", XXE, "refused as unsafe"),
    ("billion-laughs", "espi", LAUGHS, "refused as unsafe"),
    ("xml-truncated", "espi", b"<feed xmlns='http://www.w3.org/2005/Atom'><entry>", "malformed"),
    ("xml-no-readings", "espi", b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "no IntervalBlock"),
    (
        "espi-unknown-uom",
        "espi",
        b"""<feed xmlns="http://www.w3.org/2005/Atom"><entry><link rel="self" href="/RT/1"/>
        <content><ReadingType xmlns="http://naesb.org/espi"><uom>999</uom></ReadingType></content></entry>
        <entry><content><IntervalBlock xmlns="http://naesb.org/espi"/></content></entry></feed>""",
        "uses uom 999",
    ),
    ("csv-empty", "csv", b"", "empty"),
    ("csv-unknown-column", "csv", b"meter,when,kwh\nH1,now,1\n", "Unknown column"),
    (
        "csv-missing-column",
        "csv",
        b"meter_serial,value,unit\nH1,1,kWh\n",
        "Missing required column",
    ),
    (
        "csv-ragged",
        "csv",
        (HEADER + GOOD + "H1,2026-03-01T00:30:00Z,1.5,kWh,electricity,extra\n").encode(),
        "extra data after last expected column",
    ),
    (
        "csv-unterminated-quote",
        "csv",
        (HEADER + GOOD + 'H1,"2026-03-01,1,kWh,electricity\n').encode(),
        "unterminated CSV quoted field",
    ),
    (
        "csv-not-utf8",
        "csv",
        HEADER.encode() + b"H\xff1,2026-03-01T00:15:00Z,1.0,kWh,electricity\n",
        "invalid byte sequence",
    ),
    (
        "csv-nul-byte",
        "csv",
        HEADER.encode() + b"H1\x00,2026-03-01T00:15:00Z,1.0,kWh,electricity\n",
        "0x00",
    ),
    ("csv-utf16", "csv", (HEADER + GOOD).encode("utf-16"), "not UTF-8"),
    (
        "csv-no-offset",
        "csv",
        (HEADER + "H1,2026-03-01 00:15,1.0,kWh,electricity\n").encode(),
        "ISO 8601 with an offset",
    ),
    (
        "csv-bad-date",
        "csv",
        (HEADER + "H1,2026-02-30T00:15:00Z,1.0,kWh,electricity\n").encode(),
        "out of range",
    ),
    (
        "csv-wrong-unit",
        "csv",
        (HEADER + "H1,2026-03-01T00:15:00Z,1.0,furlong,electricity\n").encode(),
        'unknown unit "furlong"',
    ),
    (
        "csv-absurd",
        "csv",
        (HEADER + "H1,2026-03-01T00:15:00Z,1e30,kWh,electricity\n").encode(),
        "value is not a number",
    ),
    (
        "csv-nan",
        "csv",
        (HEADER + "H1,2026-03-01T00:15:00Z,NaN,kWh,electricity\n").encode(),
        "value is not a number",
    ),
    (
        "csv-formula",
        "csv",
        (HEADER + "H1,2026-03-01T00:15:00Z,=cmd|'/c calc'!A1,kWh,electricity\n").encode(),
        "value is not a number",
    ),
    (
        "csv-unknown-flag",
        "csv",
        b"meter_serial,timestamp,value,unit,flags\nH1,2026-03-01T00:15:00Z,1,kWh,explode\n",
        "unknown flag",
    ),
    (
        "csv-mixed-kinds",
        "csv",
        (HEADER + GOOD + "H1,2026-03-01T00:30:00Z,1.0,m3,water\n").encode(),
        "several kinds",
    ),
    (
        "csv-unit-mismatch",
        "csv",
        (HEADER + GOOD + "H1,2026-03-01T00:30:00Z,1.0,m3,electricity\n").encode(),
        "does not fit register",
    ),
    ("dsmr-garbage", "dsmr", b"hello world\n", "text before the first telegram"),
    ("dsmr-empty", "dsmr", b"\n\n", "no DSMR telegram"),
    ("chirpstack-not-json", "chirpstack", b"{not json\n", "not JSON"),
    ("chirpstack-array", "chirpstack", b"[1, 2, 3]\n", "not a JSON object"),
    ("json-not-json", "json", b'{"readings": [', "not valid JSON"),
    (
        "json-bad-number",
        "json",
        json.dumps(
            {
                "readings": [
                    {
                        "meter": "J",
                        "timestamp": "2026-03-01T00:00:00Z",
                        "value": "lots",
                        "unit": "kWh",
                    }
                ]
            }
        ).encode(),
        "must be a number",
    ),
    (
        "json-no-offset",
        "json",
        json.dumps(
            {
                "readings": [
                    {"meter": "J", "timestamp": "2026-03-01T00:00:00", "value": 1, "unit": "kWh"}
                ]
            }
        ).encode(),
        "needs an offset",
    ),
]


@pytest.mark.parametrize(
    ("fmt", "content", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_hostile_file_fails_clearly_and_imports_nothing(
    fmt: str, content: bytes, message: str
) -> None:
    batch = run_import(content, fmt)
    assert batch.status == ImportBatch.Status.FAILED, batch.error
    assert message in batch.error
    _nothing_imported()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'meters_stage%%'")
        assert cursor.fetchone() == (0,), "the staging tables are dropped"


def test_a_100_mb_line_is_refused_without_buffering_it() -> None:
    class Endless:
        """100 MB of one line, produced on the fly."""

        def __init__(self) -> None:
            self.left = 100 * 1024 * 1024

        def read(self, size: int = -1) -> bytes:
            if self.left <= 0:
                return b""
            chunk = min(self.left, 1 << 20 if size < 0 else size)
            self.left -= chunk
            return b"x" * chunk

    from django.utils import timezone

    from meters.services import imports as import_services
    from tests.factories import SYSTEM

    stream = Endless()
    header = HEADER.encode()

    class WithHeader:
        def __init__(self) -> None:
            self.sent = False

        def read(self, size: int = -1) -> bytes:
            if not self.sent:
                self.sent = True
                return header
            return stream.read(size)

    batch = import_services.batch_create(
        source="command",
        fmt="csv",
        content=WithHeader(),
        actor=SYSTEM,
        as_of=timezone.now(),
    )
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED
    assert "longer than 65536 bytes" in batch.error
    assert batch.size == len(header) + 100 * 1024 * 1024
    _nothing_imported()


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (
            lambda: HEADER + "NOPE,2026-03-01T00:15:00Z,1.0,kWh,electricity\n",
            'unknown meter "NOPE"',
        ),
        (
            lambda: (
                "meter_serial,register,timestamp,value,unit\nR1,9.9.9,2026-03-01T00:15:00Z,1,kWh\n"
            ),
            'has no register "9.9.9"',
        ),
        (lambda: HEADER + "R1,1989-12-31T23:00:00Z,1.0,kWh,electricity\n", "before 1990"),
        # Well written but impossible: a rejected row, not a failed file (issue 11).
        (
            lambda: HEADER + "R1,2026-03-01T00:00:00Z,99999999999999,kWh,electricity\n",
            "value is out of range: 99999999999999",
        ),
        (
            lambda: HEADER + "R1,2026-03-01T00:00:00Z,-5,kWh,electricity\n",
            "a register value cannot be negative: -5",
        ),
    ],
)
def test_rows_that_name_no_known_register_are_rejected_one_by_one(
    builder: Callable[[], str], message: str
) -> None:
    meter = Meter.objects.create(serial="R1", kind="electricity", max_rate=10_000)
    Register.objects.create(meter=meter, code="import", unit="Wh", is_main=True)
    batch = run_import(
        builder() + "R1,2026-03-01T00:15:00Z,1.0,kWh,electricity\n"
        if "register" not in builder()
        else builder(),
        register_meters=False,
    )
    # A good row beside it is imported; a file of only the bad row imports nothing.
    assert batch.status == (
        ImportBatch.Status.DONE_WITH_REJECTIONS if batch.seen > 1 else ImportBatch.Status.REJECTED
    )
    assert batch.rejected == 1
    assert message in batch.row_errors.get().text
