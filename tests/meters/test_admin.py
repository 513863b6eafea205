"""The meters admin: uploads, reading corrections with a reason, event acknowledgement.

Every write made here goes through meters.services and lands in the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from meters.ingest import pipeline
from meters.models import (
    ImportBatch,
    Meter,
    MeterEvent,
    Quality,
    ReadingEdit,
    Register,
    RollupHourly,
    Rule,
    ServicePoint,
    Supply,
)
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.users.models import User
from tests.factories import SYSTEM, make_account, make_user
from tests.meters.helpers import csv_rows, quarter_hours, readings, run_import

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def staff_client() -> Callable[[str | None], tuple[Client, User]]:
    """A signed-in staff member with a second factor: a superuser, or one staff group."""

    def make(group: str | None = None) -> tuple[Client, User]:
        user = make_user(f"{group or 'root'}@utility.example".replace(" ", "-"), staff=True)
        if group is not None:
            user.is_superuser = False
            user.save(update_fields=["is_superuser"])
            user.groups.add(Group.objects.get(name=group))
        TOTP.activate(user, generate_totp_secret())
        client = Client()
        client.force_login(user)
        return client, user

    return make


def _entries(since: int) -> list[AuditLogEntry]:
    return list(AuditLogEntry.objects.filter(id__gt=since).order_by("id"))


def _last_id() -> int:
    return AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _series(count: int = 8, step: float = 0.25) -> str:
    return csv_rows(
        "E-ADMIN",
        [(ts.isoformat(), 100 + i * step) for i, ts in enumerate(quarter_hours(T0, count))],
    )


def test_every_meters_admin_page_opens_for_a_superuser(
    staff_client: Callable[..., tuple[Client, User]],
) -> None:
    client, _ = staff_client()
    run_import(_series())
    register = Register.objects.get(meter__serial="E-ADMIN")
    pages = [
        "/admin/meters/",
        "/admin/meters/importbatch/upload/",
        f"/admin/meters/register/{register.pk}/change/",
        f"/admin/meters/meter/{register.meter_id}/change/",
        f"/admin/meters/importbatch/{ImportBatch.objects.get().pk}/change/",
    ]
    for model in (
        "servicepoint",
        "meter",
        "register",
        "meterinstallation",
        "supply",
        "importbatch",
        "readingedit",
        "readingconflict",
        "meterevent",
        "metercommand",
    ):
        pages.append(f"/admin/meters/{model}/")
    for model in (
        "servicepoint",
        "meter",
        "register",
        "meterinstallation",
        "supply",
        "readingedit",
        "metercommand",
    ):
        pages.append(f"/admin/meters/{model}/add/")
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)


def test_an_upload_in_the_admin_is_an_audited_batch_that_a_worker_imports(
    staff_client: Callable[..., tuple[Client, User]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client, technician = staff_client("metering technician")
    start = _last_id()
    upload = SimpleUploadedFile("readings.csv", _series().encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/admin/meters/importbatch/upload/", {"file": upload, "register_meters": "on"}
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert len(callbacks) == 1  # the worker is asked once the batch is committed
    batch = ImportBatch.objects.get()
    assert (batch.source, batch.format, batch.status) == ("admin", "csv", "queued")
    assert response["Location"] == f"/admin/meters/importbatch/{batch.pk}/change/"
    [created] = _entries(start)
    assert (created.event_type, created.actor_id) == (
        AuditEvent.IMPORT_BATCH_CREATED,
        technician.pk,
    )

    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    assert (batch.status, batch.seen, batch.inserted) == ("done", 8, 8)
    page = client.get(f"/admin/meters/importbatch/{batch.pk}/change/").content.decode()
    assert "readings.csv" in page


def test_an_upload_without_a_known_format_is_refused_with_a_clear_error(
    staff_client: Callable[..., tuple[Client, User]],
) -> None:
    client, _ = staff_client("metering technician")
    upload = SimpleUploadedFile("readings.bin", b"\x00\x01", content_type="application/x")
    response = client.post("/admin/meters/importbatch/upload/", {"file": upload})
    assert response.status_code == 200
    assert "the file name does not tell" in response.content.decode()
    assert not ImportBatch.objects.exists()


def test_support_staff_cannot_upload_or_edit_readings(
    staff_client: Callable[..., tuple[Client, User]],
) -> None:
    client, _ = staff_client("support")
    assert client.get("/admin/meters/importbatch/upload/").status_code == 403
    assert client.get("/admin/meters/readingedit/add/").status_code == 403
    assert client.get("/admin/meters/meterevent/").status_code == 200


def test_a_reading_edit_needs_a_reason_keeps_the_original_and_refreshes_rollups(
    staff_client: Callable[..., tuple[Client, User]],
) -> None:
    client, technician = staff_client("metering technician")
    run_import(_series())
    register = Register.objects.get(meter__serial="E-ADMIN")
    target = T0 + dt.timedelta(minutes=30)
    before = {r["ts"]: r for r in readings("E-ADMIN")}[target]
    hour_total = RollupHourly.objects.get(hour=T0).consumption
    form = {"register": register.pk, "ts_0": "2026-03-02", "ts_1": "00:30:00", "new_delta": "1250"}

    refused = client.post("/admin/meters/readingedit/add/", {**form, "reason": ""})
    assert refused.status_code == 200 and not ReadingEdit.objects.exists()

    start = _last_id()
    response = client.post(
        "/admin/meters/readingedit/add/", {**form, "reason": "Customer photo of the register"}
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    edit = ReadingEdit.objects.get()
    assert (edit.old_delta, edit.old_value, edit.new_delta) == (
        before["delta"],
        before["value"],
        1250,
    )
    assert edit.edited_by_id == technician.pk
    after = {r["ts"]: r for r in readings("E-ADMIN")}[target]
    assert after["delta"] == 1250 and after["quality"] == Quality.EDITED
    assert Rule.EDITED in Rule(after["flags"])
    # The hour's total follows the correction (250 Wh became 1250 Wh).
    assert RollupHourly.objects.get(hour=T0).consumption == hour_total + 1000
    [entry] = _entries(start)
    assert entry.event_type == AuditEvent.READING_EDITED and entry.actor_id == technician.pk
    assert entry.data["reason"] == "Customer photo of the register"
    assert entry.data["changes"]["delta"] == {"before": 250, "after": 1250}


def test_editing_a_reading_that_does_not_exist_says_so(
    staff_client: Callable[..., tuple[Client, User]],
) -> None:
    client, _ = staff_client("metering technician")
    run_import(_series())
    register = Register.objects.get(meter__serial="E-ADMIN")
    response = client.post(
        "/admin/meters/readingedit/add/",
        {
            "register": register.pk,
            "ts_0": "2027-01-01",
            "ts_1": "00:00:00",
            "new_delta": "1",
            "reason": "typo",
        },
        follow=True,
    )
    assert not ReadingEdit.objects.exists()
    assert "no reading" in response.content.decode().lower()


def test_acknowledging_events_in_the_admin_is_audited(
    staff_client: Callable[..., tuple[Client, User]],
) -> None:
    client, technician = staff_client("metering technician")
    meter = Meter.objects.create(serial="W-ACK", kind="water", max_rate=10_000)
    event = MeterEvent.objects.create(
        meter=meter,
        kind=MeterEvent.Kind.LEAK,
        severity=MeterEvent.Severity.SERIOUS,
        occurred_at=T0,
    )
    start = _last_id()
    response = client.post(
        "/admin/meters/meterevent/",
        {"action": "acknowledge", "_selected_action": [event.pk]},
    )
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.acknowledged_at is not None and event.acknowledged_by_id == technician.pk
    assert [e.event_type for e in _entries(start)] == [AuditEvent.METER_EVENT_ACKNOWLEDGED]


def test_fleet_changes_in_the_admin_are_audited_with_their_fields(
    staff_client: Callable[..., tuple[Client, User]],
) -> None:
    client, _ = staff_client("metering technician")
    start = _last_id()
    response = client.post(
        "/admin/meters/servicepoint/add/",
        {"code": "SP-ADMIN", "kind": "water", "address": "1 Main St", "time_zone": "Asia/Taipei"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    sp = ServicePoint.objects.get(code="SP-ADMIN")
    response = client.post(
        f"/admin/meters/servicepoint/{sp.pk}/change/",
        {"code": "SP-ADMIN", "kind": "water", "address": "2 Main St", "time_zone": "Asia/Taipei"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    entries = _entries(start)
    assert [e.event_type for e in entries] == [AuditEvent.FLEET_CREATED, AuditEvent.FLEET_UPDATED]
    assert entries[1].data["changes"] == {"address": {"before": "1 Main St", "after": "2 Main St"}}

    account = make_account("Admin occupant")
    response = client.post(
        "/admin/meters/supply/add/",
        {
            "account": account.pk,
            "service_point": sp.pk,
            "start_0": "2026-01-01",
            "start_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Supply.objects.get().account == account
