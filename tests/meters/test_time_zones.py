"""Time zones of the service points an import registers, and rebuilding the rollups.

The feeds are the real Green Button sample `electric_containerized.xml` (Pacific
LocalTimeParameters) with its two short interval blocks replaced by hourly readings around
the 2024 DST changes, so that the local days of 23 and 25 hours are in the file.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.test import Client

from meters.ingest import pipeline
from meters.ingest import sql as q
from meters.ingest.formats import espi
from meters.models import ImportBatch, Register, ServicePoint
from meters.services import fleet as fleet_services
from meters.services import imports as import_services
from meters.services import readings as reading_services
from meters.tasks import rollups_rebuild_task
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.services.organisations import organisation_create
from tests.factories import SYSTEM, make_user
from tests.meters.helpers import RECEIVED, run_import

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).parents[1] / "data" / "greenbutton" / "electric_containerized.xml"
USAGE_POINT = "C4B46B5D-D4AC-4CD3-9E29-13717DD04140"  # the sample's UsagePoint: the serial
PACIFIC = zoneinfo.ZoneInfo("America/Los_Angeles")
# Local days around both 2024 changes: 10 March has 23 hours, 3 November 25.
SPANS = ((dt.date(2024, 3, 9), dt.date(2024, 3, 12)), (dt.date(2024, 11, 2), dt.date(2024, 11, 5)))


def _hours() -> list[dt.datetime]:
    hours = []
    for first, end in SPANS:
        start = dt.datetime.combine(first, dt.time(), PACIFIC).astimezone(dt.UTC)
        stop = dt.datetime.combine(end, dt.time(), PACIFIC).astimezone(dt.UTC)
        while start < stop:
            hours.append(start)
            start += dt.timedelta(hours=1)
    return hours


def feed(*, usage_point: str = USAGE_POINT, local_time: bool = True) -> bytes:
    """The sample with hourly readings around the DST days (and without its
    LocalTimeParameters when `local_time` is false)."""
    text = SAMPLE.read_text(encoding="utf-8")
    readings = "".join(
        f"<IntervalReading><timePeriod><duration>3600</duration>"
        f"<start>{int(hour.timestamp())}</start></timePeriod>"
        f"<value>{400 + (i * 37) % 250}</value></IntervalReading>"
        for i, hour in enumerate(_hours())
    )
    blocks = iter([readings, ""])
    text = re.sub(
        r"(<IntervalBlock[^>]*>\s*<interval>.*?</interval>).*?(</IntervalBlock>)",
        lambda m: m.group(1) + next(blocks) + m.group(2),
        text,
        flags=re.S,
    )
    if not local_time:
        text = re.sub(r"<LocalTimeParameters.*?</LocalTimeParameters>", "", text, flags=re.S)
    return text.replace(USAGE_POINT, usage_point).encode()


def service_point(serial: str = USAGE_POINT) -> ServicePoint:
    return ServicePoint.objects.get(code=f"SP-{serial}")


def daily_hours(sp: ServicePoint) -> dict[dt.date, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT day, hours FROM meters_rollupdaily WHERE service_point_id = %s ORDER BY day",
            [sp.pk],
        )
        return dict(cursor.fetchall())


def rollup_checksum(sp: ServicePoint) -> str:
    """md5 of a service point's hourly and daily rollup rows, without its id (so that two
    service points with the same readings can be compared)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT md5(
                (SELECT coalesce(string_agg(concat_ws(',', direction, hour, account_id,
                                                      consumption, estimated, suspect_count,
                                                      reading_count), ';'
                                            ORDER BY direction, hour, account_id), '')
                 FROM meters_rolluphourly WHERE service_point_id = %(sp)s)
                || '|' ||
                (SELECT coalesce(string_agg(concat_ws(',', direction, day, account_id,
                                                      consumption, estimated, suspect_count,
                                                      reading_count, hours), ';'
                                            ORDER BY direction, day, account_id), '')
                 FROM meters_rollupdaily WHERE service_point_id = %(sp)s))
            """,
            {"sp": sp.pk},
        )
        (digest,) = cursor.fetchone()
    return str(digest)


def staff_client() -> Client:
    staff = make_user("root@utility.example", staff=True)
    TOTP.activate(staff, generate_totp_secret())
    client = Client()
    client.force_login(staff)
    return client


def change_zone(sp: ServicePoint, zone: str) -> None:
    fleet_services.fleet_save(instance=sp, changes={"time_zone": zone}, actor=SYSTEM)


# --- The zone of a registered service point ------------------------------------------------


def test_a_pacific_green_button_feed_registers_los_angeles_with_23_and_25_hour_days() -> None:
    batch = run_import(feed(), "espi")
    assert (batch.status, batch.rejected) == ("done", 0), batch.error
    sp = service_point()
    assert sp.time_zone == "America/Los_Angeles"
    hours = daily_hours(sp)
    assert hours[dt.date(2024, 3, 10)] == 23
    assert hours[dt.date(2024, 11, 3)] == 25
    assert {hours[dt.date(2024, 3, 9)], hours[dt.date(2024, 3, 11)]} == {24}
    assert {hours[dt.date(2024, 11, 2)], hours[dt.date(2024, 11, 4)]} == {24}
    assert set(hours) == {
        first + dt.timedelta(days=n) for first, end in SPANS for n in range((end - first).days)
    }


@pytest.mark.parametrize(
    ("tz_offset", "dst_offset", "start", "end", "zone"),
    [
        (-28800, 3600, 0x360E2000, 0xB40E2000, "America/Los_Angeles"),
        (-18000, 3600, 0x360E2000, 0xB40E2000, "America/New_York"),
        (-21600, 3600, 0x440E2000, 0xAE0E2000, "America/Chicago"),  # the rules before 2007
        (-25200, 0, 0, 0, "America/Phoenix"),
        (28800, 0, None, None, "Etc/GMT-8"),  # no DST: a fixed offset, exact whatever the place
        (3600, 3600, 0x360E2000, 0xB40E2000, None),  # US rules an hour east of UTC: no zone
        (-28800, 3600, 0x3E0E1000, 0xAE0E2000, None),  # rules of no zone in the table
        (19800, 0, 0, 0, None),  # a half-hour fixed offset: not guessed
        (None, 3600, 0x360E2000, 0xB40E2000, None),
    ],
)
def test_local_time_parameters_map_to_a_zone_only_where_the_table_says(
    tz_offset: int | None, dst_offset: int, start: int | None, end: int | None, zone: str | None
) -> None:
    assert (
        espi.local_time_zone(
            tz_offset=tz_offset, dst_offset=dst_offset, dst_start=start, dst_end=end
        )
        == zone
    )


def test_the_time_zone_option_is_used_when_the_file_states_none(tmp_path: Path) -> None:
    path = tmp_path / "no-zone.xml"
    path.write_bytes(feed(local_time=False))
    out = StringIO()
    call_command(
        "import_readings",
        str(path),
        "--format=espi",
        "--register-meters",
        "--inline",
        "--time-zone=Asia/Taipei",
        stdout=out,
    )
    assert ImportBatch.objects.get().time_zone == "Asia/Taipei"
    assert service_point().time_zone == "Asia/Taipei"


def test_the_zone_the_file_states_wins_over_the_time_zone_option(tmp_path: Path) -> None:
    path = tmp_path / "pacific.xml"
    path.write_bytes(feed())
    call_command(
        "import_readings",
        str(path),
        "--format=espi",
        "--register-meters",
        "--inline",
        "--time-zone=Asia/Taipei",
        stdout=StringIO(),
    )
    assert service_point().time_zone == "America/Los_Angeles"


def test_the_admin_upload_takes_a_zone_for_new_service_points() -> None:
    upload = SimpleUploadedFile("no-zone.xml", feed(local_time=False))
    response = staff_client().post(
        "/admin/meters/importbatch/upload/",
        {"file": upload, "format": "espi", "register_meters": "on", "time_zone": "Asia/Taipei"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = ImportBatch.objects.get()
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=RECEIVED)
    assert service_point().time_zone == "Asia/Taipei"


def test_an_unknown_time_zone_option_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no-zone.xml"
    path.write_bytes(feed(local_time=False))
    with pytest.raises(CommandError, match="nknown time zone"):
        call_command("import_readings", str(path), "--format=espi", "--time-zone=Mars/Olympus")
    assert not ImportBatch.objects.exists()


def test_the_organisations_zone_when_neither_file_nor_batch_states_one() -> None:
    organisation = organisation_create(
        name="Amsterdam utility", time_zone="Europe/Amsterdam", actor=SYSTEM
    )
    run_import(feed(local_time=False), "espi", organisation=organisation)
    assert service_point().time_zone == "Europe/Amsterdam"
    run_import(feed(usage_point="NO-ORGANISATION", local_time=False), "espi")
    assert service_point("NO-ORGANISATION").time_zone == "UTC"  # the site's (settings)


def test_a_new_meter_stated_in_two_zones_fails_the_batch_before_anything_is_merged() -> None:
    text = feed().decode()
    # A second LocalTimeParameters (Eastern), linked from a second UsagePoint entry that
    # carries the same Atom id: one meter, two zones.
    eastern = (
        text.split("<entry>")[2]
        .replace("LocalTimeParameters/01", "LocalTimeParameters/02")
        .replace("-28800", "-18000")
    )
    usage_point = (
        text.split("<entry>")[1]
        .replace("UsagePoint/1", "UsagePoint/9")
        .replace("LocalTimeParameters/01", "LocalTimeParameters/02")
    )
    block = text.split("<entry>")[5].replace("UsagePoint/1", "UsagePoint/9")
    reading = text.split("<entry>")[3].replace("UsagePoint/1", "UsagePoint/9")
    doubled = text.replace(
        "</feed>",
        "".join("<entry>" + part for part in (eastern, usage_point, reading, block)) + "</feed>",
    )
    batch = run_import(doubled.encode(), "espi")
    assert batch.status == "failed"
    assert "Conflicting time zones" in batch.error
    assert "America/Los_Angeles and America/New_York" in batch.error
    assert not ServicePoint.objects.exists()


# --- Rebuilding ----------------------------------------------------------------------------


def test_changing_the_zone_and_rebuilding_equals_importing_into_that_zone() -> None:
    run_import(feed(), "espi")
    moved = service_point()
    pacific = rollup_checksum(moved)
    # The same readings imported into a service point registered in Taipei.
    import_in_zone(feed(usage_point="BORN-IN-TAIPEI", local_time=False), "espi", "Asia/Taipei")
    born = service_point("BORN-IN-TAIPEI")
    assert born.time_zone == "Asia/Taipei"
    taipei = rollup_checksum(born)

    change_zone(moved, "Asia/Taipei")
    assert rollup_checksum(moved) == pacific  # the change alone leaves the old days
    out = StringIO()
    call_command("rebuild_rollups", "--service-point", moved.code, stdout=out)
    assert rollup_checksum(moved) == taipei != pacific
    assert "2024-03 (1/9)" in out.getvalue()
    assert 23 not in daily_hours(moved).values()

    call_command("rebuild_rollups", "--service-point", str(moved.pk), stdout=StringIO())
    assert rollup_checksum(moved) == taipei  # twice: the same


def import_in_zone(content: bytes, fmt: str, zone: str) -> ImportBatch:
    batch = import_services.batch_create(
        source=ImportBatch.Source.COMMAND,
        fmt=fmt,
        content=BytesIO(content),
        actor=SYSTEM,
        register_meters=True,
        time_zone=zone,
        as_of=RECEIVED,
    )
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=RECEIVED)
    batch.refresh_from_db()
    return batch


def hourly_csv(serial: str) -> bytes:
    """Two days of hourly deltas from midnight UTC: in Los Angeles they start the day before."""
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    lines = ["meter_serial,timestamp,delta,duration,unit,kind"]
    lines += [
        f"{serial},{(start + dt.timedelta(hours=h + 1)).isoformat()},{100 + h},3600,Wh,electricity"
        for h in range(48)
    ]
    return ("\n".join(lines) + "\n").encode()


def test_moving_a_zone_east_removes_the_days_of_the_old_zone() -> None:
    import_in_zone(hourly_csv("WEST"), "csv", "America/Los_Angeles")
    import_in_zone(hourly_csv("EAST"), "csv", "Asia/Taipei")
    west, east = service_point("WEST"), service_point("EAST")
    assert min(daily_hours(west)) == dt.date(2023, 12, 31)
    change_zone(west, "Asia/Taipei")
    result = reading_services.rollups_rebuild(service_point_ids=[west.pk], actor=SYSTEM)
    assert rollup_checksum(west) == rollup_checksum(east)
    assert min(daily_hours(west)) == dt.date(2024, 1, 1)
    assert result.stale_days == 1  # 31 December in Los Angeles: no hour of it in Taipei


def test_a_zone_change_queues_the_rebuild_on_commit_and_the_task_is_idempotent(
    django_capture_on_commit_callbacks: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(feed(), "espi")
    sp = service_point()
    pacific = rollup_checksum(sp)
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(rollups_rebuild_task, "delay", lambda **kwargs: queued.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        fleet_services.fleet_save(instance=sp, changes={"address": "1 Ocean Ave"}, actor=SYSTEM)
    assert queued == []  # only the zone decides the days
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        change_zone(sp, "America/New_York")
    assert queued == []  # not before the change is committed
    for callback in callbacks:
        callback()
    assert queued == [{"service_point_id": sp.pk}]

    rollups_rebuild_task(**queued[0])
    eastern = rollup_checksum(sp)
    assert eastern != pacific
    assert daily_hours(sp)[dt.date(2024, 3, 10)] == 23  # Eastern has the same DST days
    rollups_rebuild_task(**queued[0])
    assert rollup_checksum(sp) == eastern

    change_zone(sp, "America/Los_Angeles")
    rollups_rebuild_task(service_point_id=sp.pk)
    assert rollup_checksum(sp) == pacific  # and back


def test_a_zone_change_in_the_admin_queues_the_rebuild(
    django_capture_on_commit_callbacks: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(feed(), "espi")
    sp = service_point()
    admin_client = staff_client()
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(rollups_rebuild_task, "delay", lambda **kwargs: queued.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/meters/servicepoint/{sp.pk}/change/",
            {"code": sp.code, "kind": sp.kind, "address": "", "time_zone": "Asia/Tokyo"},
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == "/admin/meters/servicepoint/"
    assert queued == [{"service_point_id": sp.pk}]


def test_a_rebuild_of_a_range_touches_only_its_days_and_is_audited() -> None:
    run_import(feed(), "espi")
    sp = service_point()
    before = rollup_checksum(sp)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE meters_rollupdaily SET consumption = 0 WHERE service_point_id = %s",
            [sp.pk],
        )
    start = AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    out = StringIO()
    call_command(
        "rebuild_rollups",
        "--service-point",
        sp.code,
        "--from",
        "2024-03-10",
        "--to",
        "2024-03-10",
        stdout=out,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT day, consumption > 0 FROM meters_rollupdaily WHERE service_point_id = %s",
            [sp.pk],
        )
        rebuilt = {day for day, positive in cursor.fetchall() if positive}
    assert rebuilt == {dt.date(2024, 3, 10)}
    call_command("rebuild_rollups", "--service-point", sp.code, stdout=StringIO())
    assert rollup_checksum(sp) == before
    [first, second] = AuditLogEntry.objects.filter(id__gt=start).order_by("id")
    assert first.event_type == AuditEvent.ROLLUPS_REBUILT
    assert first.actor_label == "command:rebuild_rollups"
    assert (first.data["first"], first.data["last"]) == ("2024-03-10", "2024-03-10")
    assert (second.data["first"], second.data["last"]) == ("2024-03-09", "2024-11-05")


def test_a_rebuild_waits_for_the_lock_an_import_of_the_same_meter_holds(
    transactional_db: None,  # committed: in a test's transaction the import keeps its locks
) -> None:
    run_import(feed(), "espi")
    sp = service_point()
    [register] = Register.objects.filter(meter__serial=USAGE_POINT).values_list("pk", flat=True)
    importer = connection.copy()  # another session, as a worker merging that register
    try:
        with importer.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [q.REGISTER_LOCK + register])
        with connection.cursor() as cursor:
            # Instead of waiting for the importer: the rebuild must be stopped by its lock.
            cursor.execute("SET lock_timeout = '50ms'")
        with pytest.raises(OperationalError, match="lock timeout"):
            reading_services.rollups_rebuild(service_point_ids=[sp.pk], actor=SYSTEM)
    finally:
        importer.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    reading_services.rollups_rebuild(service_point_ids=[sp.pk], actor=SYSTEM)  # free again
