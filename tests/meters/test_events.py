"""Derived events (silent meters, night flow), notifications, and the inbox folder."""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from pathlib import Path

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from meters.models import (
    ImportBatch,
    Meter,
    MeterEvent,
    MeterInstallation,
    Register,
    ServicePoint,
)
from meters.services import events as event_services
from meters.services import inbound as inbound_services
from meters.services import supply as supply_services
from portal.notifications.models import Notification
from portal.notifications.services import notifications_send
from tests.conftest import World
from tests.factories import SYSTEM
from tests.meters.helpers import csv_rows, run_import

pytestmark = pytest.mark.django_db
TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")


def _water_home(world: World, serial: str = "W-HOME") -> Meter:
    sp = ServicePoint.objects.create(code=f"SP-{serial}", kind="water", time_zone="Asia/Taipei")
    meter = Meter.objects.create(serial=serial, kind="water", max_rate=3_000)
    Register.objects.create(
        meter=meter, code="import", unit="L", is_main=True, series="interval", interval_seconds=900
    )
    MeterInstallation.objects.create(
        meter=meter, service_point=sp, installed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    supply_services.supply_start(
        account=world.account_a,
        service_point=sp,
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        actor=SYSTEM,
    )
    return meter


def _night(serial: str, day: dt.date, litres_by_hour: dict[int, float]) -> str:
    """Quarter-hour consumption from 00:00 to 06:00 local time on `day`."""
    rows = []
    start = dt.datetime.combine(day, dt.time(0, 15), TAIPEI)
    for i in range(24):
        end = start + dt.timedelta(minutes=15 * i)
        hour = (end - dt.timedelta(minutes=15)).hour
        rows.append((end.isoformat(), litres_by_hour.get(hour, 0.0) / 4))
    return csv_rows(serial, rows, unit="L", kind="water", column="delta")


def test_continuous_night_flow_is_a_probable_leak_and_the_members_are_told(
    world: World,
) -> None:
    _water_home(world)
    night = dt.date(2026, 10, 6)
    run_import(_night("W-HOME", night, {1: 8, 2: 6, 3: 6, 4: 7, 5: 30}), register_meters=False)
    morning = dt.datetime.combine(night, dt.time(9), TAIPEI)
    assert event_services.derived_events_detect(as_of=morning) == 1
    event = MeterEvent.objects.get()
    assert (event.kind, event.account, event.severity) == (
        "night_flow",
        world.account_a,
        MeterEvent.Severity.SERIOUS,
    )
    assert event.occurred_at == dt.datetime.combine(night, dt.time(5), TAIPEI)
    assert event_services.derived_events_detect(as_of=morning + dt.timedelta(hours=1)) == 0

    assert event_services.meter_events_notify(as_of=morning, actor=SYSTEM) == 1
    assert notifications_send(as_of=morning).sent == 3
    # One message each; bob only views the account, and viewers hear alarms only on request.
    assert sorted(m.to[0] for m in mail.outbox) == [
        "alice@example.com",
        "max@example.com",
        "pat@example.com",
    ]
    message = mail.outbox[0]
    assert "W-HOME" in message.body and "2026-10-06 05:00" in message.body  # local time
    assert "夜間持續用水" in message.body and "continuous night flow" in message.body
    assert event_services.meter_events_notify(as_of=morning, actor=SYSTEM) == 0
    assert notifications_send(as_of=morning).sent == 0
    assert len(mail.outbox) == 3


def test_a_night_with_a_dry_hour_is_not_a_leak(world: World) -> None:
    _water_home(world)
    night = dt.date(2026, 10, 6)
    run_import(_night("W-HOME", night, {1: 8, 2: 6, 4: 7}), register_meters=False)
    assert event_services.derived_events_detect(as_of=dt.datetime(2026, 10, 7, tzinfo=dt.UTC)) == 0


def test_late_readings_of_an_earlier_night_are_still_checked(world: World) -> None:
    _water_home(world)
    night = dt.date(2026, 10, 6)
    run_import(_night("W-HOME", night, {1: 5, 2: 5, 3: 5, 4: 5}), register_meters=False)
    two_days_later = dt.datetime.combine(night + dt.timedelta(days=2), dt.time(9), TAIPEI)
    event_services.derived_events_detect(as_of=two_days_later)
    # (The meter has been silent since, too: communication lost.)
    assert set(MeterEvent.objects.values_list("kind", flat=True)) == {
        "night_flow",
        "communication_lost",
    }


def test_a_meter_silent_too_long_has_lost_communication(world: World) -> None:
    meter = _water_home(world)
    now = timezone.now()
    meter.last_contact_at = now - dt.timedelta(hours=30)
    meter.save()
    assert event_services.derived_events_detect(as_of=now) == 1
    event = MeterEvent.objects.get(kind="communication_lost")
    assert event.account == world.account_a and event.severity == MeterEvent.Severity.WARNING
    assert event_services.derived_events_detect(as_of=now + dt.timedelta(hours=1)) == 0
    # A silent meter is told only to members who switched that topic on: nobody here has.
    assert event_services.meter_events_notify(as_of=now, actor=SYSTEM) == 1
    assert not Notification.objects.filter(key=f"event:{event.pk}").exists()


def test_a_leak_alarm_reaches_only_the_members_of_the_account_supplied_then(
    world: World,
) -> None:
    _water_home(world)
    csv = (
        "meter_serial,timestamp,delta,unit,flags\n"
        "W-HOME,2026-10-06T10:15:00+08:00,2,L,leak\n"
        "W-HOME,2026-10-06T10:30:00+08:00,2,L,\n"
    )
    run_import(csv, register_meters=False)
    assert event_services.meter_events_notify(as_of=timezone.now(), actor=SYSTEM) == 1
    midday = dt.datetime(2026, 10, 6, 4, tzinfo=dt.UTC)  # noon in Taipei: no quiet hours
    assert notifications_send(as_of=midday).sent == 3
    assert "charlie@example.com" not in {m.to[0] for m in mail.outbox}


def test_the_inbox_takes_settled_files_once_and_sets_aside_unknown_ones(
    tmp_path: Path,
) -> None:
    old = timezone.now().timestamp() - 120
    ready = tmp_path / "readings-2026-10.csv"
    ready.write_text(csv_rows("INBOX-1", [("2026-10-01T00:15:00Z", 1.0)]))
    os.utime(ready, (old, old))
    unknown = tmp_path / "notes.docx"
    unknown.write_bytes(b"PK\x03\x04")
    os.utime(unknown, (old, old))
    writing = tmp_path / "still-copying.csv"
    writing.write_text("meter_serial,timestamp,value,unit\n")
    with override_settings(PORTAL_IMPORT_INBOX=str(tmp_path)):
        assert inbound_services.inbox_collect(actor=SYSTEM, as_of=timezone.now()) == 1
        assert inbound_services.inbox_collect(actor=SYSTEM, as_of=timezone.now()) == 0
    batch = ImportBatch.objects.get()
    assert (batch.source, batch.original_name) == ("inbox", "readings-2026-10.csv")
    assert [p.name.endswith("readings-2026-10.csv") for p in (tmp_path / "processed").iterdir()]
    assert [p.name for p in (tmp_path / "unrecognised").iterdir()] == ["notes.docx"]
    assert writing.exists()  # changed seconds ago: taken by a later run
