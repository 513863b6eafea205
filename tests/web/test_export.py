"""The data export pages: ask for an export, watch its progress by htmx polling, download it
(audited), and who may do which."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import DataExport
from billing.services.exports import export_build, export_request
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.celery import app
from portal.tenancy.models import Account
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db


def _page(account: Account) -> str:
    return reverse("web:account_export", kwargs={"account_id": account.public_id})


def _status(export: DataExport) -> str:
    return reverse(
        "web:account_export_status",
        kwargs={"account_id": export.account.public_id, "export_id": export.public_id},
    )


def _download(export: DataExport) -> str:
    return reverse(
        "web:account_export_download",
        kwargs={"account_id": export.account.public_id, "export_id": export.public_id},
    )


def _built(account: Account) -> DataExport:
    export = export_request(account=account, actor=SYSTEM, as_of=timezone.now())
    built = export_build(export_id=export.pk, actor=SYSTEM, as_of=timezone.now())
    assert built is not None
    return built


def test_asking_for_an_export_queues_it_and_the_page_polls_its_progress(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.alice)
    page = client.get(_page(world.account_a)).content.decode()
    assert "Export my data" in page and "readings.csv" in page
    assert 'name="csrfmiddlewaretoken"' in page
    response = client.post(_page(world.account_a))
    assert response.status_code == 302 and response["Location"] == _page(world.account_a)
    export = DataExport.objects.get(account=world.account_a)
    assert export.status == DataExport.Status.QUEUED
    assert export.requested_by == world.alice
    (entry,) = AuditLogEntry.objects.filter(event_type=AuditEvent.DATA_EXPORT_REQUESTED)
    assert entry.actor_id == world.alice.pk and entry.account_id == world.account_a.pk
    # A second click while it is open is the same export.
    client.post(_page(world.account_a))
    assert DataExport.objects.filter(account=world.account_a).count() == 1

    page = client.get(_page(world.account_a)).content.decode()
    assert f'hx-get="{_status(export)}"' in page and 'hx-trigger="every 2s"' in page
    assert "X-Portal-Passive" in page  # polling does not keep an idle session alive
    DataExport.objects.filter(pk=export.pk).update(
        status=DataExport.Status.RUNNING, rows_done=250, rows_total=1000, part="readings.csv"
    )
    assert client.get(_status(export))["Location"] == _page(world.account_a)  # not polled
    fragment = client.get(_status(export), headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith("<li")
    assert 'hx-trigger="every 2s"' in fragment
    assert 'aria-valuenow="25"' in fragment and '<rect width="25"' in fragment
    assert "250 of 1,000 rows written (25%)" in fragment and "style=" not in fragment

    export_build(export_id=export.pk, actor=SYSTEM, as_of=timezone.now())
    fragment = client.get(_status(export), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in fragment  # finished: the polling stops
    assert _download(export) in fragment


def test_the_download_is_the_zip_and_is_audited(
    world: World, client_for: Callable[[User], Client]
) -> None:
    export = _built(world.account_a)
    response = client_for(world.pat).get(_download(export))  # a payer has the export scope
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert f"account-{world.account_a.number}-data-" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert "readings.csv" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    (entry,) = AuditLogEntry.objects.filter(event_type=AuditEvent.DATA_EXPORT_DOWNLOADED)
    assert entry.actor_id == world.pat.pk and entry.data["data_export"] == str(export.public_id)


def test_no_download_before_it_is_done_after_it_expires_or_from_another_account(
    world: World, client_for: Callable[[User], Client]
) -> None:
    alice = client_for(world.alice)
    queued = export_request(account=world.account_a, actor=SYSTEM, as_of=timezone.now())
    assert alice.get(_download(queued)).status_code == 404
    done = export_build(export_id=queued.pk, actor=SYSTEM, as_of=timezone.now())
    assert done is not None
    DataExport.objects.filter(pk=done.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert alice.get(_download(done)).status_code == 404
    # Account B's owner, with account A's export id under their own account: not found.
    other = reverse(
        "web:account_export_download",
        kwargs={"account_id": world.account_b.public_id, "export_id": done.public_id},
    )
    assert client_for(world.charlie).get(other).status_code == 404
    assert client_for(world.charlie).get(_download(done)).status_code == 404
    assert not AuditLogEntry.objects.filter(event_type=AuditEvent.DATA_EXPORT_DOWNLOADED).exists()


def test_a_viewer_may_not_export(world: World, client_for: Callable[[User], Client]) -> None:
    bob = client_for(world.bob)  # a viewer: no export scope
    assert bob.get(_page(world.account_a)).status_code == 403
    assert bob.post(_page(world.account_a)).status_code == 403
    export = _built(world.account_a)
    assert bob.get(_download(export)).status_code == 403
    assert bob.get(_status(export)).status_code == 403
    assert not DataExport.objects.filter(requested_by=world.bob).exists()
    # Nor is the tab shown to them; it is to the owner.
    home = reverse("tenancy:account_home", kwargs={"account_id": world.account_a.public_id})
    assert _page(world.account_a) not in bob.get(home).content.decode()
    assert _page(world.account_a) in client_for(world.alice).get(home).content.decode()


def test_without_a_broker_the_export_is_built_inline(
    world: World,
    client_for: Callable[[User], Client],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    # What `make run` does when no Redis answers: CELERY_TASK_ALWAYS_EAGER.
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        client = client_for(world.alice)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(_page(world.account_a))
    finally:
        app.conf.task_always_eager = eager
    assert response.status_code == 302
    export = DataExport.objects.get(account=world.account_a)
    assert export.status == DataExport.Status.DONE
    page = client.get(_page(world.account_a)).content.decode()
    assert _download(export) in page and "hx-trigger" not in page
