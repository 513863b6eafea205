"""Meter alarms on the one notifications path: who hears them, once, in their language, and not
during their quiet hours; and the page where residents choose them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from meters.models import Meter, MeterEvent
from meters.services import events as event_services
from portal.audit.actors import UserActor
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.notifications.models import Notification
from portal.notifications.selectors import notification_preference_for
from portal.notifications.services import (
    notification_preference_set,
    notification_preferences_set,
    notifications_send,
)
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from portal.tenancy.selectors import Audience, members_to_notify
from tests.conftest import World
from tests.factories import SYSTEM, make_membership, make_user

pytestmark = pytest.mark.django_db

# 23:00 in Taipei (the accounts' time zone): inside the default quiet hours, 22:00-08:00.
NIGHT = dt.datetime(2026, 10, 6, 15, tzinfo=dt.UTC)
MORNING = NIGHT + dt.timedelta(hours=9)  # 08:00 local, the quiet hours are over


def _alarm(account: Account, kind: str = MeterEvent.Kind.LEAK, serial: str = "W-1") -> MeterEvent:
    meter = Meter.objects.create(serial=serial, kind="water", max_rate=3_000)
    return MeterEvent.objects.create(
        meter=meter,
        account=account,
        kind=kind,
        severity=MeterEvent.Severity.SERIOUS,
        occurred_at=NIGHT - dt.timedelta(minutes=5),
    )


def _told() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


def test_a_viewer_with_default_preferences_gets_no_leak_email(world: World) -> None:
    _alarm(world.account_a)
    assert event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM) == 1
    assert notifications_send(as_of=MORNING).sent == 3
    assert "bob@example.com" not in _told()
    assert not Notification.objects.filter(user=world.bob).exists()


def test_an_owner_gets_the_leak_email_once_in_their_language_after_their_quiet_hours(
    world: World,
) -> None:
    world.alice.language = "zh-hant"
    world.alice.save(update_fields=["language"])
    _alarm(world.account_a)
    assert event_services.meter_events_notify(as_of=NIGHT, actor=SYSTEM) == 1

    assert notifications_send(as_of=NIGHT).sent == 0  # 23:00: everyone's messages wait
    assert notifications_send(as_of=MORNING - dt.timedelta(minutes=1)).sent == 0
    assert mail.outbox == []
    assert notifications_send(as_of=MORNING).sent == 3

    [message] = [m for m in mail.outbox if m.to == ["alice@example.com"]]
    assert "W-1" in message.body
    assert "漏水" in message.subject  # the kind, in Chinese
    assert "leak" not in message.subject.lower() and "reported" not in message.body
    assert "———" not in message.body  # one language, not both
    # A member without a language still gets every language, English first.
    [pats] = [m for m in mail.outbox if m.to == ["pat@example.com"]]
    assert pats.body.index("reported") < pats.body.index("———")

    # Once: the event is not queued again, and the sender has nothing left.
    assert event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM) == 0
    assert notifications_send(as_of=MORNING + dt.timedelta(hours=1)).sent == 0
    assert _told().count("alice@example.com") == 1


def test_a_viewer_who_opts_in_gets_it(world: World) -> None:
    notification_preference_set(user=world.bob, topic="leak", email=True, sms=False, actor=SYSTEM)
    _alarm(world.account_a)
    event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM)
    notifications_send(as_of=MORNING)
    assert _told() == [
        "alice@example.com",
        "bob@example.com",
        "max@example.com",
        "pat@example.com",
    ]


def test_a_viewer_opted_in_to_tampering_still_hears_no_leak(world: World) -> None:
    notification_preference_set(user=world.bob, topic="tamper", email=True, sms=False, actor=SYSTEM)
    _alarm(world.account_a)
    event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM)
    notifications_send(as_of=MORNING)
    assert "bob@example.com" not in _told() and len(_told()) == 3


def test_an_owner_who_switched_leaks_off_is_recorded_as_not_told(world: World) -> None:
    notification_preference_set(
        user=world.alice, topic="leak", email=False, sms=False, actor=SYSTEM
    )
    event = _alarm(world.account_a)
    event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM)
    notifications_send(as_of=MORNING)
    assert "alice@example.com" not in _told()
    mine = Notification.objects.get(user=world.alice)
    assert (mine.key, mine.topic, mine.status) == (f"event:{event.pk}", "leak", "suppressed")


def test_the_organisations_above_the_account_hear_its_alarms_and_siblings_do_not(
    world: World,
) -> None:
    _alarm(world.acc1, kind=MeterEvent.Kind.TAMPER_COVER)
    event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM)
    notifications_send(as_of=MORNING)
    assert _told() == ["gm@example.com", "s1m@example.com"]
    assert set(Notification.objects.values_list("topic", flat=True)) == {"tamper"}


def test_the_recipients_selector_gives_each_person_their_highest_role(world: World) -> None:
    # Bob views account A, and manages the group above acc1 too.
    make_membership(world.bob, Role.MANAGER, organisation=world.group)
    everyone = dict(members_to_notify(account_id=world.acc1.pk, audience=Audience.EVERYONE))
    assert everyone == {
        world.bob.pk: Role.MANAGER,
        world.group_manager.pk: Role.MANAGER,
        world.sub1_manager.pk: Role.MANAGER,
    }
    roles = dict(members_to_notify(account_id=world.account_a.pk, audience=Audience.EVERYONE))
    assert roles[world.bob.pk] == Role.VIEWER and roles[world.alice.pk] == Role.OWNER
    account = dict(members_to_notify(account_id=world.account_a.pk, audience=Audience.ACCOUNT))
    assert world.bob.pk not in account


# --- the page -----------------------------------------------------------------------------


def _page(user_email: str, world: World) -> tuple[Client, str]:
    client = Client()
    client.force_login(
        {u.email: u for u in (world.alice, world.bob)}.get(user_email) or make_user(user_email)
    )
    return client, reverse("billing:account_notifications", args=[world.account_a.public_id])


def test_residents_choose_leak_and_tamper_alerts_on_the_notifications_page(world: World) -> None:
    client, url = _page("alice@example.com", world)
    page = client.get(url)
    form = page.context["form"]
    assert form["email_leak"].value() is True and form["email_tamper"].value() is True
    labels = [label for label, _email, _sms in form.topic_rows()]
    assert {"leak or water flowing at night", "tampering with a meter"} <= set(labels)

    data = {f"email_{t}": "on" for t in ("shortage", "bill_issued", "bill_overdue", "valve")}
    data.update(quiet="default", phone="", language="zh-hant")
    assert client.post(url, data).status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.language == "zh-hant"
    chosen = {
        topic: (pref.email, pref.sms)
        for topic in ("leak", "tamper", "comms_loss", "valve")
        if (pref := notification_preference_for(user_id=world.alice.pk, topic=topic))
    }
    # Leak and tamper alarms switched off, the valve's switched on (it is off until chosen);
    # contact loss stays as it was, off by default (no row).
    assert chosen == {
        "leak": (False, False),
        "tamper": (False, False),
        "valve": (True, False),
    }


def test_a_viewer_sees_meter_alarms_off_until_they_switch_them_on(world: World) -> None:
    client, url = _page("bob@example.com", world)
    page = client.get(url)
    form = page.context["form"]
    assert form["email_leak"].value() is False and form["email_shortage"].value() is True
    assert "only for the kinds you switch on here" in page.content.decode()


def test_a_language_change_is_audited_with_the_member_as_actor(world: World) -> None:
    actor = UserActor(user=world.alice)
    assert notification_preferences_set(user=world.alice, changes=[], language="en", actor=actor)
    assert not notification_preferences_set(
        user=world.alice, changes=[], language="en", actor=actor
    )
    [entry] = AuditLogEntry.objects.filter(event_type=AuditEvent.NOTIFICATION_PREFERENCE_SAVED)
    assert (entry.actor_id, entry.data["language"]) == (
        world.alice.pk,
        {"before": "", "after": "en"},
    )


def test_contact_loss_is_told_only_to_those_who_switched_it_on(world: World) -> None:
    notification_preference_set(
        user=world.alice, topic="comms_loss", email=True, sms=False, actor=SYSTEM
    )
    event = _alarm(world.account_a, kind=MeterEvent.Kind.COMMUNICATION_LOST)
    MeterEvent.objects.filter(pk=event.pk).update(severity=MeterEvent.Severity.WARNING)
    assert event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM) == 1
    notifications_send(as_of=MORNING)
    # An owner with default preferences is not mailed about a silent meter; alice asked to be.
    assert _told() == ["alice@example.com"]
    assert Notification.objects.get(user=world.alice).topic == "comms_loss"


def test_a_minor_event_without_an_opt_in_topic_is_not_notified(world: World) -> None:
    event = _alarm(world.account_a, kind=MeterEvent.Kind.LEAK)
    MeterEvent.objects.filter(pk=event.pk).update(severity=MeterEvent.Severity.WARNING)
    assert event_services.meter_events_notify(as_of=MORNING, actor=SYSTEM) == 0
