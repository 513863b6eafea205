"""The audit log as CSV: the page's filters, streamed, formula cells neutralised, audited."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portal.audit.actors import SystemActor
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Membership
from portal.tenancy.roles import Role
from portal.tenancy.services.members import membership_change_role
from portal.tenancy.services.organisations import organisation_update
from portal.users.models import User
from tests.conftest import World

pytestmark = pytest.mark.django_db
ClientFor = Callable[[User], Client]
EVIL = '=HYPERLINK("http://evil.example/","x")'


def _rows(response: object) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return list(csv.DictReader(io.StringIO(body)))


def test_an_account_log_downloads_with_its_filters(world: World, client_for: ClientFor) -> None:
    bob = Membership.objects.get(user=world.bob, account=world.account_a)
    membership_change_role(membership=bob, role=Role.PAYER, actor=SystemActor(EVIL))
    url = reverse("audit:account_log_csv", args=[world.account_a.public_id])
    response = client_for(world.alice).get(url, {"event": "member.role_change"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="audit-{world.account_a.number}-'
    )
    rows = _rows(response)
    assert list(rows[0]) == ["time", "event", "actor", "summary", "target"]
    assert len(rows) == 1
    row = rows[0]
    assert row["event"] == "member.role_change"
    assert row["actor"] == "'" + EVIL  # a spreadsheet shows it, never runs it
    assert row["summary"] == "changed the role of bob@example.com from Viewer to Payer"
    assert row["target"] == f"tenancy.membership:{bob.pk}"
    when = dt.datetime.fromisoformat(row["time"])
    assert when.utcoffset() == dt.timedelta(0)
    assert abs(when - timezone.now()) < dt.timedelta(minutes=5)


def test_the_since_filter_and_the_page_link(world: World, client_for: ClientFor) -> None:
    client = client_for(world.alice)
    url = reverse("audit:account_log_csv", args=[world.account_a.public_id])
    # "since" is a day of the account's zone: tomorrow there, not in UTC (from 16:00 UTC on,
    # Taipei's today is UTC's tomorrow).
    local_today = timezone.now().astimezone(zoneinfo.ZoneInfo(world.account_a.time_zone)).date()
    tomorrow = (local_today + dt.timedelta(days=1)).isoformat()
    assert _rows(client.get(url, {"since": tomorrow})) == []
    assert len(_rows(client.get(url))) >= 5  # creation and the four memberships
    page = client.get(
        reverse("audit:account_log", args=[world.account_a.public_id]),
        {"event": "member.add", "since": "2020-01-01"},
    ).content.decode()
    assert "Export CSV" in page
    assert f"{url}?event=member.add&amp;since=2020-01-01" in page


def test_an_organisation_log_covers_its_subtree_but_not_its_siblings(
    world: World, client_for: ClientFor
) -> None:
    organisation_update(
        organisation=world.sub1, changes={"name": "Sub One"}, actor=SystemActor("t")
    )
    organisation_update(
        organisation=world.sub2, changes={"name": "Sub Two"}, actor=SystemActor("t")
    )
    group = _rows(
        client_for(world.group_manager).get(
            reverse("audit:organisation_log_csv", args=[world.group.public_id])
        )
    )
    summaries = {row["summary"] for row in group}
    assert "changed organisation Sub One" in summaries
    assert "changed organisation Sub Two" in summaries
    client = client_for(world.sub1_manager)
    sub1 = _rows(client.get(reverse("audit:organisation_log_csv", args=[world.sub1.public_id])))
    summaries = {row["summary"] for row in sub1}
    assert "changed organisation Sub One" in summaries
    assert "changed organisation Sub Two" not in summaries
    url = reverse("audit:organisation_log_csv", args=[world.sub2.public_id])
    assert client.get(url).status_code == 404


def test_each_download_is_audited_and_needs_audit_read(world: World, client_for: ClientFor) -> None:
    url = reverse("audit:account_log_csv", args=[world.account_a.public_id])
    assert client_for(world.bob).get(url).status_code == 403  # a viewer
    assert client_for(world.pat).get(url).status_code == 403  # a payer
    before = AuditLogEntry.objects.filter(event_type=AuditEvent.CSV_EXPORTED).count()
    response = client_for(world.max).get(url, {"event": "account.create"})
    assert response.status_code == 200
    entry = AuditLogEntry.objects.filter(event_type=AuditEvent.CSV_EXPORTED).latest("id")
    assert before == 0 and entry.account_id == world.account_a.pk
    assert entry.actor_id == world.max.pk
    assert entry.data == {"export": "audit_log", "query": "event=account.create"}
    assert entry.display == "exported the audit log as CSV"


def test_the_summary_follows_the_readers_language(world: World, client_for: ClientFor) -> None:
    client = client_for(world.alice)
    client.cookies["django_language"] = "zh-hant"
    url = reverse("audit:account_log_csv", args=[world.account_a.public_id])
    rows = _rows(client.get(url, {"event": "member.add"}))
    assert rows and all(row["event"] == "member.add" for row in rows)
    english = _rows(client_for(world.alice).get(url, {"event": "member.add"}))
    assert {r["summary"] for r in rows} != {r["summary"] for r in english}


@pytest.mark.parametrize("query", ["event=no.such.event", "since=2026-13-45", "since=yesterday"])
def test_an_export_with_bad_filters_is_refused_not_widened(
    query: str, world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.alice)
    url = reverse("audit:account_log_csv", args=[world.account_a.public_id])
    response = client.get(f"{url}?{query}")
    assert response.status_code == 400
    assert response.content.decode()
