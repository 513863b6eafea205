"""Row errors: every check runs, each problem is a code with parameters on the row's line, and
values that cannot fit are rejected rows, never an exception or a failed batch (issue 11)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.test import Client
from django.urls import reverse
from django.utils import translation

from meters.ingest.errors import ROW_ERRORS, render
from meters.models import ImportBatch, Meter, Register
from portal.tenancy.services.api_keys import api_key_create
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_user
from tests.meters.helpers import readings, run_import

pytestmark = pytest.mark.django_db
HEADER = "meter_serial,timestamp,value,unit,kind\n"
FINISHED = {ImportBatch.Status.DONE, "done_with_rejections"}


def _codes(batch: ImportBatch) -> dict[int, list[str]]:
    """Each rejected line's codes, in the order they are stored."""
    found: dict[int, list[str]] = {}
    for error in batch.row_errors.order_by("line", "pk"):
        found.setdefault(error.line, []).append(error.code)
    return found


def _finished(batch: ImportBatch) -> None:
    """The batch ended normally: imported what it could, or rejected a file whose every row
    was rejected (with that message), never failed on an exception."""
    assert batch.status in {*FINISHED, ImportBatch.Status.REJECTED}, batch.error
    if batch.status == ImportBatch.Status.REJECTED:
        assert batch.rejected == batch.seen and batch.error.startswith("All "), batch.error
    else:
        assert batch.error == ""


# --- Values that cannot fit ------------------------------------------------------------------


def test_json_integers_beyond_bigint_are_rejected_rows() -> None:
    body = {
        "readings": [
            {
                "meter": "J1",
                "timestamp": "2026-03-01T00:15:00Z",
                "value": 1,
                "unit": "kWh",
                "kind": "electricity",
            },
            {
                "meter": "J1",
                "timestamp": "2100-03-01T00:30:00Z",
                "value": 10**30,
                "unit": "kWh",
                "kind": "electricity",
            },
            {
                "meter": "J1",
                "timestamp": "2026-03-01T00:45:00Z",
                "delta": 1,
                "duration": 10**20,
                "unit": "kWh",
                "kind": "electricity",
            },
            {
                "meter": "J1",
                "timestamp": "2026-03-01T01:00:00Z",
                "value": 2,
                "unit": "kWh",
                "kind": "electricity",
            },
        ]
    }
    batch = run_import(json.dumps(body), "json")
    _finished(batch)
    assert (batch.inserted, batch.rejected) == (2, 2)
    # The value cannot be staged, and the row checks in SQL still run on the rest of the row.
    assert _codes(batch) == {2: ["out_of_range", "future_timestamp"], 3: ["out_of_range"]}
    assert batch.row_errors.filter(line=3).get().params == {
        "field": "duration",
        "value": str(10**20),
    }
    assert [r["value"] for r in readings("J1")] == [1000, 2000]


def test_a_chirpstack_event_with_a_huge_integer_is_a_rejected_row() -> None:
    def uplink(value: object, time: str, **extra: object) -> str:
        reading = {"value": value, "unit": "m3", "time": time, **extra}
        return json.dumps(
            {"deviceInfo": {"devEui": "a1b2c3d4e5f60001"}, "object": {"readings": [reading]}}
        )

    meter = Meter.objects.create(
        serial="W1", dev_eui="A1B2C3D4E5F60001", kind="water", max_rate=10_000
    )
    Register.objects.create(meter=meter, code="import", unit="L", is_main=True)
    lines = [
        uplink(1.0, "2026-03-01T00:15:00Z"),
        uplink(10**40, "2026-03-01T00:30:00Z"),
        uplink(1.5, "2026-03-01T00:45:00Z", duration=2**40),
        uplink(1.25, "2026-03-01T01:00:00Z"),
    ]
    batch = run_import("\n".join(lines) + "\n", "chirpstack", register_meters=False)
    _finished(batch)
    assert (batch.inserted, batch.rejected) == (2, 2)
    assert _codes(batch) == {2: ["out_of_range"], 3: ["out_of_range"]}


def _espi(blocks: str, *, extra: str = "") -> bytes:
    """A small ESPI feed: one usage point, its meter reading (Wh, hourly) and the blocks."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <entry><id>urn:uuid:up-one</id><link href="/UsagePoint/1" rel="self"/>
    <link href="/UsagePoint/1/MeterReading/1" rel="related"/>
    <content><UsagePoint xmlns="http://naesb.org/espi"><ServiceCategory><kind>0</kind>
    </ServiceCategory></UsagePoint></content></entry>
  <entry><link href="/UsagePoint/1/MeterReading/1" rel="self"/>
    <link href="/ReadingType/1" rel="related"/>
    <content><MeterReading xmlns="http://naesb.org/espi"/></content></entry>
  <entry><link href="/ReadingType/1" rel="self"/>
    <content><ReadingType xmlns="http://naesb.org/espi"><uom>72</uom>
      <powerOfTenMultiplier>0</powerOfTenMultiplier><intervalLength>3600</intervalLength>
    </ReadingType></content></entry>
  {extra}
  <entry><link href="/UsagePoint/1/MeterReading/1/IntervalBlock/1" rel="self"/>
    <content><IntervalBlock xmlns="http://naesb.org/espi">{blocks}</IntervalBlock></content>
  </entry>
</feed>""".encode()


def _interval(start: int, value: str, duration: str = "3600") -> str:
    return (
        f"<IntervalReading><timePeriod><duration>{duration}</duration><start>{start}</start>"
        f"</timePeriod><value>{value}</value></IntervalReading>"
    )


T0 = 1772323200  # 2026-03-01T00:00:00Z


def test_an_espi_value_with_30_digits_is_a_rejected_row() -> None:
    feed = _espi(
        _interval(T0, "100")
        + _interval(T0 + 3600, "1" * 30)
        + _interval(T0 + 7200, "5", duration="1" * 30)
        + _interval(10**30, "5")
        + _interval(T0 + 10800, "200")
    )
    batch = run_import(feed, "espi")
    _finished(batch)
    assert (batch.inserted, batch.rejected) == (2, 3)
    assert _codes(batch) == {2: ["out_of_range"], 3: ["out_of_range"], 4: ["espi_unreadable"]}


def test_an_unlinked_espi_reading_still_gets_its_value_checks() -> None:
    # A second meter reading makes the block below ambiguous: it links to neither.
    other = (
        '<entry><link href="/UsagePoint/2/MeterReading/2" rel="self"/>'
        '<link href="/ReadingType/1" rel="related"/>'
        '<content><MeterReading xmlns="http://naesb.org/espi"/></content></entry>'
        '<entry><link href="/Elsewhere/IntervalBlock/9" rel="self"/>'
        '<content><IntervalBlock xmlns="http://naesb.org/espi">'
        + _interval(T0, "lots")
        + _interval(T0, "1" * 30)
        + _interval(T0, "7")
        + "</IntervalBlock></content></entry>"
    )
    batch = run_import(_espi(_interval(T0 + 3600, "100"), extra=other), "espi")
    _finished(batch)
    assert batch.rejected == 3
    assert _codes(batch) == {
        1: ["espi_unlinked", "espi_unreadable"],
        2: ["espi_unlinked", "out_of_range"],
        3: ["espi_unlinked"],
    }


def test_a_far_future_reading_on_a_new_meter_is_rejected_before_registration() -> None:
    rows = [f"N1,2026-03-01T00:{m:02d}:00Z,{1 + m / 100},kWh,electricity" for m in (0, 15, 30, 45)]
    rows.append("N1,9999-12-31T00:00:00Z,2.0,kWh,electricity")
    rows.append("N2,9999-12-31T00:00:00Z,2.0,kWh,electricity")  # every row of N2 rejected
    batch = run_import(HEADER + "\n".join(rows) + "\n")
    _finished(batch)
    assert (batch.inserted, batch.rejected) == (4, 2)
    assert _codes(batch) == {6: ["future_timestamp"], 7: ["future_timestamp"]}
    assert not Meter.objects.filter(serial="N2").exists()
    register = Register.objects.get(meter__serial="N1")
    assert register.interval_seconds == 900  # the guess ignores the rejected row


def test_a_row_reports_all_its_problems_and_counts_once() -> None:
    Register.objects.create(
        meter=Meter.objects.create(serial="R1", kind="electricity", max_rate=10_000),
        code="import",
        unit="Wh",
        is_main=True,
    )
    text = (
        HEADER
        + "R1,2026-03-01T00:15:00Z,1.0,kWh,electricity\n"
        + "NOPE,2100-01-01T00:00:00Z,99999999999999,kWh,electricity\n"
        + "R1,1980-01-01T00:00:00Z,-3,kWh,electricity\n"
    )
    batch = run_import(text, register_meters=False)
    _finished(batch)
    assert (batch.inserted, batch.rejected, batch.row_error_count) == (1, 2, 5)
    assert _codes(batch) == {
        3: ["out_of_range", "future_timestamp", "unknown_meter"],
        4: ["negative_register_value", "timestamp_before_1990"],
    }


def test_the_cap_counts_stored_problems_and_rejected_counts_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("meters.ingest.staging.MAX_STORED_ROW_ERRORS", 3)
    text = HEADER + "".join(f"NOPE{n},2100-01-01T00:00:00Z,1,kWh,electricity\n" for n in range(2))
    batch = run_import(text, register_meters=False)
    _finished(batch)
    assert (batch.rejected, batch.row_error_count, batch.row_errors.count()) == (2, 4, 3)
    assert _codes(batch) == {2: ["future_timestamp", "unknown_meter"], 3: ["future_timestamp"]}


# --- Overlapping periods ---------------------------------------------------------------------


def test_overlapping_periods_are_named_and_identical_ones_stay_duplicates() -> None:
    text = (
        "meter_serial,timestamp,delta,duration,unit,kind\n"
        "P1,2026-03-01T00:15:00Z,0.25,900,kWh,electricity\n"  # line 2: [00:00, 00:15)
        "P1,2026-03-01T00:20:00Z,0.30,900,kWh,electricity\n"  # line 3: [00:05, 00:20)
        "P1,2026-03-01T00:45:00Z,0.25,900,kWh,electricity\n"  # line 4: [00:30, 00:45)
        "P1,2026-03-01T00:45:00Z,0.25,900,kWh,electricity\n"  # line 5: the same again
        "P1,2026-03-01T01:00:00Z,0.25,900,kWh,electricity\n"  # line 6: [00:45, 01:00)
    )
    batch = run_import(text)
    _finished(batch)
    assert (batch.inserted, batch.duplicate, batch.conflicting, batch.rejected) == (2, 1, 0, 2)
    errors = list(batch.row_errors.order_by("line"))
    assert [(e.line, e.code, e.params) for e in errors] == [
        (2, "overlapping_period", {"line": "3"}),
        (3, "overlapping_period", {"line": "2"}),
    ]
    with translation.override("en"):
        assert errors[0].text == "its period overlaps the period of line 3"
    with translation.override("zh-hant"):
        assert errors[0].text == "其期間與第 3 行的期間重疊"


def test_billing_periods_may_overlap_by_a_dst_hour() -> None:
    text = (
        "meter_serial,timestamp,delta,duration,unit,kind\n"
        "B1,2026-03-02T00:00:00Z,10,86400,kWh,electricity\n"  # [03-01 00:00, 03-02 00:00)
        "B1,2026-03-02T23:00:00Z,10,86400,kWh,electricity\n"  # starts an hour early: kept
        "B1,2026-03-03T21:00:00Z,10,86400,kWh,electricity\n"  # two hours early: rejected
    )
    batch = run_import(text)
    _finished(batch)
    assert (batch.inserted, batch.rejected) == (1, 2)
    assert _codes(batch) == {3: ["overlapping_period"], 4: ["overlapping_period"]}


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("csv", HEADER),
        ("json", '{"readings": []}'),
        ("chirpstack", '{"deviceInfo": {"devEui": "A1"}, "object": {"readings": []}}\n'),
    ],
)
def test_a_file_without_readings_raises_nothing(fmt: str, content: str) -> None:
    batch = run_import(content, fmt)
    assert batch.status != ImportBatch.Status.RUNNING
    assert (batch.inserted, batch.rejected) == (0, 0)


# --- Text that must not reach a spreadsheet or a terminal ------------------------------------


def test_serials_and_register_codes_like_formulas_are_rejected() -> None:
    text = (
        "meter_serial,register,timestamp,value,unit,kind\n"
        "=HYPERLINK(1),,2026-03-01T00:15:00Z,1,kWh,electricity\n"
        "@SUM,,2026-03-01T00:15:00Z,1,kWh,electricity\n"
        "S1,+1,2026-03-01T00:15:00Z,1,kWh,electricity\n"
        '"S\x012",,2026-03-01T00:15:00Z,1,kWh,electricity\n'
        "S1,,2026-03-01T00:15:00Z,1,kWh,electricity\n"
    )
    batch = run_import(text)
    _finished(batch)
    assert (batch.inserted, batch.rejected) == (1, 4)
    assert _codes(batch) == {
        2: ["unsafe_text"],
        3: ["unsafe_text"],
        4: ["unsafe_text"],
        5: ["unsafe_text"],
    }
    assert list(Meter.objects.values_list("serial", flat=True)) == ["S1"]
    error = batch.row_errors.get(line=4)
    assert error.params == {"field": "register", "value": "+1"}


# --- In the reader's language ----------------------------------------------------------------


def test_the_api_and_the_imports_page_show_row_errors_in_the_readers_language(
    world: World, client_for: Callable[[User], Client]
) -> None:
    Register.objects.create(
        meter=Meter.objects.create(
            serial="SUB1-W1", kind="water", organisation=world.sub1, max_rate=5_000
        ),
        code="import",
        unit="L",
        is_main=True,
    )
    batch = run_import(
        "meter_serial,timestamp,value,unit\n"
        "SUB1-W1,2026-03-01T00:15:00Z,1,m3\n"
        "SUB1-W1,2100-03-01T00:15:00Z,2,m3\n",
        organisation=world.sub1,
        register_meters=False,
    )
    _finished(batch)
    _api_key, key = api_key_create(organisation=world.sub1, name="head-end", actor=SYSTEM)
    url = reverse("meters:api_batch_detail", kwargs={"batch_id": batch.public_id})
    api = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    english = api.get(url, HTTP_ACCEPT_LANGUAGE="en").json()["row_errors"]
    chinese = api.get(url, HTTP_ACCEPT_LANGUAGE="zh-Hant").json()["row_errors"]
    assert [e["code"] for e in english] == ["future_timestamp"]
    assert english[0]["message"] == "the timestamp 2100-03-01T00:15:00Z is in the future"
    assert chinese[0]["message"] == "時間戳記 2100-03-01T00:15:00Z 在未來"

    client = client_for(world.sub1_manager)
    client.cookies["django_language"] = "zh-hant"
    page = client.get(
        reverse(
            "meters:organisation_import",
            kwargs={"org_id": world.sub1.public_id, "batch_id": batch.public_id},
        )
    ).content.decode()
    assert "時間戳記 2100-03-01T00:15:00Z 在未來" in page

    staff = make_user("root@utility.example", staff=True)
    TOTP.activate(staff, generate_totp_secret())
    admin = Client()
    admin.force_login(staff)
    admin.cookies["django_language"] = "zh-hant"
    page = admin.get(f"/admin/meters/importbatch/{batch.pk}/change/").content.decode()
    assert "時間戳記 2100-03-01T00:15:00Z 在未來" in page and "future_timestamp" in page


# --- Every code can be read --------------------------------------------------------------------

SOURCE = Path(__file__).resolve().parents[2] / "meters" / "ingest"
# RowError(line, "code" ...) in the parsers, _problem("code", ...) in the SQL row checks and
# {"code": "..."} in the staging guard.
EMITTED = (
    re.compile(r"RowError\(\s*[\w.]+,\s*\"(\w+)\""),
    re.compile(r"_problem\(\s*\"(\w+)\""),
    re.compile(r"\"code\": \"(\w+)\""),
)


def _emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        if path.name == "errors.py":  # its docstring shows how to emit "the_code"
            continue
        text = path.read_text()
        for pattern in EMITTED:
            codes.update(pattern.findall(text))
    return codes


def test_every_code_emitted_has_a_template_and_a_chinese_translation() -> None:
    emitted = _emitted_codes()
    assert {"overlapping_period", "unknown_meter", "espi_unlinked"} <= emitted  # the grep works
    assert sorted(emitted - set(ROW_ERRORS)) == []
    untranslated = []
    for code, template in ROW_ERRORS.items():
        if code == "message":  # the stored English sentence itself
            continue
        with translation.override("zh-hant"):
            chinese = str(template)
        with translation.override("en"):
            english = str(template)
        if chinese == english or not re.search(r"[\u4e00-\u9fff]", chinese):
            untranslated.append(code)
        placeholders = set(re.findall(r"%\((\w+)\)s", english))
        assert placeholders == set(re.findall(r"%\((\w+)\)s", chinese)), code
    assert untranslated == []


def test_an_unknown_code_is_shown_as_itself() -> None:
    assert render("no_such_code", {"a": "1"}) == "no_such_code (a=1)"


def test_integers_too_long_for_python_and_infinities_are_rejected_rows() -> None:
    huge = "9" * 5000  # beyond int()'s 4300-digit limit: json.loads would raise ValueError
    body = (
        '{"readings": [\n'
        '{"meter": "J1", "timestamp": "2026-03-01T00:15:00Z", "value": 1, "unit": "kWh",'
        ' "kind": "electricity"},\n'
        f'{{"meter": "J1", "timestamp": "2026-03-01T00:30:00Z", "value": {huge}, "unit": "kWh",'
        ' "kind": "electricity"},\n'
        f'{{"meter": "J1", "timestamp": "2026-03-01T00:45:00Z", "delta": 1, "duration": {huge},'
        ' "unit": "kWh", "kind": "electricity"},\n'
        '{"meter": "J1", "timestamp": "2026-03-01T01:00:00Z", "value": 1e999, "unit": "kWh",'
        ' "kind": "electricity"}\n'
        "]}"
    )
    batch = run_import(body, "json")
    _finished(batch)
    assert (batch.inserted, batch.rejected) == (1, 3)
    assert _codes(batch) == {2: ["out_of_range"], 3: ["out_of_range"], 4: ["out_of_range"]}

    device = '"deviceInfo": {"devEui": "a1b2c3d4e5f60002"}'
    lines = [
        f'{{{device}, "object": {{"value": {huge}, "unit": "m3", '
        '"time": "2026-03-01T00:15:00Z"}}',
        f'{{{device}, "object": {{"value": 1e999, "unit": "m3", "time": "2026-03-01T00:30:00Z"}}}}',
        f'{{{device}, "object": {{"value": 1, "unit": "m3", "duration": {huge}, '
        '"time": "2026-03-01T00:45:00Z"}}',
        f'{{"event": "status", "payload": {{{device}, "batteryLevel": {huge}}}}}',
    ]
    batch = run_import("\n".join(lines) + "\n", "chirpstack", reprocess=True)
    _finished(batch)
    assert _codes(batch) == {1: ["out_of_range"], 2: ["out_of_range"], 3: ["out_of_range"]}
