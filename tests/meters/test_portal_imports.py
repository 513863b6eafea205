"""Organisation managers upload readings for their own meters and follow the batch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from meters.ingest import pipeline
from meters.models import ImportBatch, Meter, Register
from portal.tenancy.models import Organisation
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM
from tests.meters.helpers import readings

pytestmark = pytest.mark.django_db
CSV = (
    "meter_serial,timestamp,value,unit\n"
    "SUB1-W1,2026-10-01T00:15:00+08:00,10.000,m3\n"
    "SUB1-W1,2026-10-01T00:30:00+08:00,10.010,m3\n"
    "SUB2-W1,2026-10-01T00:30:00+08:00,3.000,m3\n"
)


def _meter(serial: str, organisation: Organisation) -> None:
    meter = Meter.objects.create(
        serial=serial, kind="water", organisation=organisation, max_rate=5_000
    )
    Register.objects.create(meter=meter, code="import", unit="L", is_main=True)


def _imports(org: Organisation) -> str:
    return reverse("meters:organisation_imports", kwargs={"org_id": org.public_id})


def _upload(
    client: Client, org: Organisation, content: str, name: str = "march.csv"
) -> ImportBatch:
    response = client.post(
        _imports(org), {"file": SimpleUploadedFile(name, content.encode(), "text/csv")}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = ImportBatch.objects.order_by("-pk").first()
    assert batch is not None
    assert response["Location"] == reverse(
        "meters:organisation_import",
        kwargs={"org_id": org.public_id, "batch_id": batch.public_id},
    )
    return batch


def test_a_manager_uploads_readings_of_their_own_meters(
    world: World, client_for: Callable[[User], Client]
) -> None:
    _meter("SUB1-W1", world.sub1)
    _meter("SUB2-W1", world.sub2)
    client = client_for(world.sub1_manager)
    batch = _upload(client, world.sub1, CSV)
    assert (batch.organisation, batch.source, batch.created_by) == (
        world.sub1,
        "upload",
        world.sub1_manager,
    )
    detail = reverse(
        "meters:organisation_import",
        kwargs={"org_id": world.sub1.public_id, "batch_id": batch.public_id},
    )
    # While it waits for a worker, the status fragment polls itself, as a passive request.
    fragment = client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in fragment and "X-Portal-Passive" in fragment
    assert "<html" not in fragment

    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    assert (batch.status, batch.inserted, batch.rejected) == ("done_with_rejections", 2, 1)
    assert [r["value"] for r in readings("SUB1-W1")] == [10_000, 10_010]
    assert readings("SUB2-W1") == []
    page = client.get(detail).content.decode()
    assert "hx-trigger" not in page  # done: no more polling
    assert "unknown meter &quot;SUB2-W1&quot;" in page
    listing = client.get(_imports(world.sub1)).content.decode()
    assert "march.csv" in listing


def test_the_same_file_from_another_organisation_is_not_a_duplicate(
    world: World, client_for: Callable[[User], Client]
) -> None:
    _meter("SUB1-W1", world.sub1)
    _meter("SUB2-W1", world.sub2)
    first = _upload(client_for(world.sub1_manager), world.sub1, CSV)
    pipeline.run(batch_id=first.pk, actor=SYSTEM, as_of=timezone.now())
    second = _upload(client_for(world.sub2_manager), world.sub2, CSV)
    assert second.status == "queued" and second.duplicate_of is None
    pipeline.run(batch_id=second.pk, actor=SYSTEM, as_of=timezone.now())
    second.refresh_from_db()
    assert (second.inserted, second.rejected) == (1, 2)
    again = _upload(client_for(world.sub2_manager), world.sub2, CSV)
    assert again.status == "duplicate" and again.duplicate_of == second


def test_the_group_manager_sees_subsidiary_batches_but_not_the_reverse(
    world: World, client_for: Callable[[User], Client]
) -> None:
    _meter("SUB1-W1", world.sub1)
    sub1_batch = _upload(client_for(world.sub1_manager), world.sub1, CSV, "sub1.csv")
    group_batch = _upload(client_for(world.group_manager), world.group, CSV + "\n", "group.csv")
    group_page = client_for(world.group_manager).get(_imports(world.group)).content.decode()
    assert "sub1.csv" in group_page and "group.csv" in group_page
    sub1_client = client_for(world.sub1_manager)
    assert "group.csv" not in sub1_client.get(_imports(world.sub1)).content.decode()
    hidden = reverse(
        "meters:organisation_import",
        kwargs={"org_id": world.sub1.public_id, "batch_id": group_batch.public_id},
    )
    assert sub1_client.get(hidden).status_code == 404
    assert sub1_batch.organisation == world.sub1


def test_uploads_without_a_format_or_over_the_limit_are_refused(
    world: World, client_for: Callable[[User], Client], settings: object
) -> None:
    client = client_for(world.sub1_manager)
    response = client.post(
        _imports(world.sub1), {"file": SimpleUploadedFile("readings.bin", b"1,2", "x/y")}
    )
    assert response.status_code == 400
    assert "the file name does not tell" in response.content.decode()
    settings.PORTAL_IMPORT_MAX_UPLOAD = 10  # type: ignore[attr-defined]
    response = client.post(
        _imports(world.sub1), {"file": SimpleUploadedFile("r.csv", CSV.encode(), "text/csv")}
    )
    assert response.status_code == 400
    assert "larger than" in response.content.decode()
    assert not ImportBatch.objects.exists()
