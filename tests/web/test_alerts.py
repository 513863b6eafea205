"""The account's alerts page: meter events and low-credit warnings, and acknowledging events."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import ShortageWarning
from billing.services.ledger import wallet_adjust, wallet_create
from meters.models import Meter, MeterEvent, MeterInstallation, ServicePoint
from meters.services.supply import supply_start
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope, scopes_for
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
JAN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MOVE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = itertools.count(1)


def _water(
    account: Account, since: dt.datetime = JAN, until: dt.datetime | None = None
) -> tuple[ServicePoint, Meter]:
    n = next(_n)
    point = ServicePoint.objects.create(code=f"ALSP{n}", kind="water", time_zone="Asia/Taipei")
    meter = Meter.objects.create(serial=f"AL{n}", kind="water", max_rate=1000)
    MeterInstallation.objects.create(meter=meter, service_point=point, installed_at=JAN)
    supply_start(account=account, service_point=point, start=since, end=until, actor=SYSTEM)
    return point, meter


def _event(
    meter: Meter,
    point: ServicePoint,
    account: Account | None,
    at: dt.datetime,
    *,
    kind: str = MeterEvent.Kind.LEAK,
    severity: int = MeterEvent.Severity.SERIOUS,
) -> MeterEvent:
    return MeterEvent.objects.create(
        meter=meter,
        service_point=point,
        account=account,
        kind=kind,
        severity=severity,
        occurred_at=at,
    )


def _alerts(account: Account) -> str:
    return reverse("web:account_alerts", kwargs={"account_id": account.public_id})


def _ack(account: Account, event: MeterEvent) -> str:
    return reverse(
        "web:account_alert_acknowledge",
        kwargs={"account_id": account.public_id, "event_id": event.pk},
    )


def _audits(event: AuditEvent) -> int:
    return AuditLogEntry.objects.filter(event_type=event).count()


def test_only_managers_and_owners_may_acknowledge() -> None:
    allowed = [role for role in Role if Scope.ALERTS_ACKNOWLEDGE in scopes_for(role)]
    assert allowed == [Role.OWNER, Role.MANAGER]


def test_a_viewer_sees_alerts_but_cannot_acknowledge_and_the_refusal_is_audited(
    world: World, client_for: Callable[[User], Client]
) -> None:
    point, meter = _water(world.account_a)
    event = _event(meter, point, world.account_a, JAN + dt.timedelta(days=5))
    client = client_for(world.bob)
    page = client.get(_alerts(world.account_a))
    assert page.status_code == 200
    html = page.content.decode()
    assert "leak" in html and meter.serial in html
    assert _ack(world.account_a, event) not in html  # no button for a viewer
    denied = _audits(AuditEvent.ACCESS_DENIED)
    assert client.post(_ack(world.account_a, event)).status_code == 403
    assert _audits(AuditEvent.ACCESS_DENIED) == denied + 1
    event.refresh_from_db()
    assert event.acknowledged_at is None
    # A payer may top up, not acknowledge.
    assert client_for(world.pat).post(_ack(world.account_a, event)).status_code == 403


def test_a_manager_acknowledges_once_however_often_they_ask(
    world: World, client_for: Callable[[User], Client]
) -> None:
    point, meter = _water(world.account_a)
    event = _event(meter, point, world.account_a, JAN + dt.timedelta(days=5))
    client = client_for(world.max)
    assert _ack(world.account_a, event) in client.get(_alerts(world.account_a)).content.decode()
    response = client.post(_ack(world.account_a, event), {"show": "all"})
    assert response.status_code == 302
    assert response["Location"] == _alerts(world.account_a) + "?show=all"
    event.refresh_from_db()
    assert event.acknowledged_by == world.max and event.acknowledged_at is not None
    first = event.acknowledged_at
    assert _audits(AuditEvent.METER_EVENT_ACKNOWLEDGED) == 1
    entry = AuditLogEntry.objects.get(event_type=AuditEvent.METER_EVENT_ACKNOWLEDGED)
    assert (entry.account_id, entry.actor_id) == (world.account_a.pk, world.max.pk)
    # Again, by someone else: nothing changes and nothing more is recorded.
    assert client_for(world.alice).post(_ack(world.account_a, event)).status_code == 302
    event.refresh_from_db()
    assert (event.acknowledged_by, event.acknowledged_at) == (world.max, first)
    assert _audits(AuditEvent.METER_EVENT_ACKNOWLEDGED) == 1
    # Open alerts (the default) no longer list it; all alerts show who acknowledged it.
    assert meter.serial not in client.get(_alerts(world.account_a)).content.decode()
    shown = client.get(_alerts(world.account_a) + "?show=all").content.decode()
    assert "Acknowledged by a manager" in shown  # a name if they gave one; never the email


def test_with_htmx_the_row_is_swapped_in_place(
    world: World, client_for: Callable[[User], Client]
) -> None:
    point, meter = _water(world.account_a)
    event = _event(meter, point, world.account_a, JAN + dt.timedelta(days=5))
    client = client_for(world.alice)
    page = client.get(_alerts(world.account_a)).content.decode()
    assert f'hx-post="{_ack(world.account_a, event)}"' in page
    assert 'hx-target="closest tr"' in page
    response = client.post(_ack(world.account_a, event), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    row = response.content.decode().strip()
    assert row.startswith(f'<tr id="alert-event-{event.pk}">') and row.endswith("</tr>")
    assert "Acknowledged by a manager" in row
    assert "hx-post" not in row


def test_acknowledge_takes_only_post(world: World, client_for: Callable[[User], Client]) -> None:
    point, meter = _water(world.account_a)
    event = _event(meter, point, world.account_a, JAN + dt.timedelta(days=5))
    assert client_for(world.alice).get(_ack(world.account_a, event)).status_code == 405


def test_a_new_occupant_never_sees_the_previous_occupants_events(
    client_for: Callable[[User], Client],
) -> None:
    before, after = make_account("Before"), make_account("After")
    point, meter = _water(before, until=MOVE)
    supply_start(account=after, service_point=point, start=MOVE, actor=SYSTEM)
    theirs = _event(meter, point, before, MOVE - dt.timedelta(days=3))
    # Stamped with the new occupant but from before their move-in (a supply recorded late).
    misfiled = _event(meter, point, after, MOVE - dt.timedelta(days=2), kind="burst")
    mine = _event(meter, point, after, MOVE + dt.timedelta(days=3), kind="backflow")
    newcomer, leaver = make_user(), make_user()
    make_membership(newcomer, Role.OWNER, account=after)
    make_membership(leaver, Role.OWNER, account=before)

    shown = client_for(newcomer).get(_alerts(after) + "?show=all")
    assert [row.event for row in shown.context["page"].object_list] == [mine]
    assert client_for(newcomer).post(_ack(after, theirs)).status_code == 404
    assert client_for(newcomer).post(_ack(after, misfiled)).status_code == 404
    old = client_for(leaver).get(_alerts(before) + "?show=all")
    assert [row.event for row in old.context["page"].object_list] == [theirs]


def test_times_are_shown_in_the_accounts_time_zone(
    world: World, client_for: Callable[[User], Client]
) -> None:
    point, meter = _water(world.account_a)
    _event(meter, point, world.account_a, dt.datetime(2026, 4, 10, 16, 30, tzinfo=dt.UTC))
    html = client_for(world.bob).get(_alerts(world.account_a)).content.decode()
    assert "11 Apr 2026, 00:30" in html  # Asia/Taipei, UTC+8
    assert "Asia/Taipei" in html


def test_low_credit_warnings_are_open_until_the_credit_comes_back(
    world: World, client_for: Callable[[User], Client]
) -> None:
    wallet = wallet_create(account=world.account_a, actor=SYSTEM)
    old = ShortageWarning.objects.create(
        account=world.account_a,
        threshold=0,
        crossing=0,
        balance=0,
        created_at=JAN,
    )
    empty = ShortageWarning.objects.create(
        account=world.account_a,
        threshold=0,
        crossing=1,
        balance=-5_00,
        created_at=MOVE,
    )
    # The escalation repeats the same shortage for the managers above: not a row of its own.
    ShortageWarning.objects.create(
        account=world.account_a, threshold=0, crossing=1, level=1, balance=-5_00, created_at=MOVE
    )
    client = client_for(world.bob)
    rows = client.get(_alerts(world.account_a)).context["page"].object_list
    assert [(row.key, row.open, row.severity) for row in rows] == [
        (f"warning-{empty.pk}", True, MeterEvent.Severity.SERIOUS)
    ]
    everything = client.get(_alerts(world.account_a) + "?show=all").context["page"].object_list
    assert [(row.key, row.open) for row in everything] == [
        (f"warning-{empty.pk}", True),
        (f"warning-{old.pk}", False),
    ]
    wallet_adjust(
        wallet=wallet, amount=500_00, reason="top-up", idempotency_key="t", actor=SYSTEM, as_of=MOVE
    )
    assert list(client.get(_alerts(world.account_a)).context["page"].object_list) == []
    assert "Resolved" in client.get(_alerts(world.account_a) + "?show=all").content.decode()


def test_events_and_warnings_are_merged_newest_first_and_paginated(
    world: World, client_for: Callable[[User], Client]
) -> None:
    point, meter = _water(world.account_a)
    for day in range(30):
        _event(meter, point, world.account_a, JAN + dt.timedelta(days=day, hours=1))
    wallet_create(account=world.account_a, actor=SYSTEM)
    warning = ShortageWarning.objects.create(
        account=world.account_a,
        threshold=3,
        crossing=0,
        balance=0,
        created_at=JAN + dt.timedelta(days=10),
    )
    client = client_for(world.bob)
    first = client.get(_alerts(world.account_a)).context["page"]
    assert first.paginator.count == 31 and len(first.object_list) == 25
    times = [row.at for row in first.object_list]
    assert times == sorted(times, reverse=True)
    second = client.get(_alerts(world.account_a) + "?page=2").context["page"].object_list
    assert len(second) == 6
    keys = [row.key for row in [*first.object_list, *second]]
    assert len(set(keys)) == 31 and f"warning-{warning.pk}" in keys
    # Days 29 to 10 (01:00) come first, then the warning (day 10, 00:00), then day 9.
    assert keys.index(f"warning-{warning.pk}") == 20


def test_the_account_tabs_lead_to_alerts_and_notifications(
    world: World, client_for: Callable[[User], Client]
) -> None:
    html = client_for(world.bob).get(
        reverse("tenancy:account_home", args=[world.account_a.public_id])
    )
    assert _alerts(world.account_a) in html.content.decode()
    assert (
        reverse("billing:account_notifications", args=[world.account_a.public_id])
        in html.content.decode()
    )
