"""Meter events: acknowledgement, derived events, and the alerts they raise."""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial

from django.conf import settings
from django.db import connection, models, transaction
from django.utils.translation import gettext as _

from meters.models import (
    MeterEvent,
)
from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.notifications.services import Target, notifications_queue, texts_in_every_language
from portal.notifications.topics import OPT_IN_TOPICS, Topic
from portal.tenancy.selectors import Audience

logger = logging.getLogger(__name__)

# --- Events and commands -------------------------------------------------------------------


@transaction.atomic
def meter_event_acknowledge(*, event: MeterEvent, actor: Actor, as_of: dt.datetime) -> MeterEvent:
    """Mark an event as seen and handled; acknowledging twice changes nothing."""
    event = MeterEvent.objects.select_for_update().select_related("meter").get(pk=event.pk)
    if event.acknowledged_at is not None:
        return event
    event.acknowledged_at = as_of
    event.acknowledged_by = actor.user if isinstance(actor, UserActor) else None
    event.save(update_fields=["acknowledged_at", "acknowledged_by"])
    audit_record(
        actor=actor,
        event=AuditEvent.METER_EVENT_ACKNOWLEDGED,
        account=event.account,
        target=event,
        data={"kind": event.kind, "meter": event.meter.serial, "occurred_at": event.occurred_at},
    )
    return event


# Which members' topic each kind of event is; kinds without one (battery, power) stay with the
# utility's staff.
_EVENT_TOPICS = {
    MeterEvent.Kind.LEAK: Topic.LEAK,
    MeterEvent.Kind.BURST: Topic.LEAK,
    MeterEvent.Kind.BACKFLOW: Topic.LEAK,
    MeterEvent.Kind.NIGHT_FLOW: Topic.LEAK,
    MeterEvent.Kind.TAMPER_MAGNETIC: Topic.TAMPER,
    MeterEvent.Kind.TAMPER_TILT: Topic.TAMPER,
    MeterEvent.Kind.TAMPER_COVER: Topic.TAMPER,
    MeterEvent.Kind.COMMUNICATION_LOST: Topic.COMMS_LOSS,
    MeterEvent.Kind.VALVE_OPEN: Topic.VALVE,
    MeterEvent.Kind.VALVE_CLOSED: Topic.VALVE,
}


def _event_texts(event: MeterEvent) -> dict[str, str]:
    """Subject, body and text message of an event's alarm, in the active language."""
    from django.template.loader import render_to_string

    assert event.account is not None  # noqa: S101 - only events with an account are sent
    context = {
        "event": event,
        "account": event.account,
        "meter": event.meter,
        "link": f"{settings.PORTAL_BASE_URL.rstrip('/')}/a/{event.account.public_id}/",
        "site_name": settings.PORTAL_SITE_NAME,
    }
    return {
        "subject": render_to_string("meters/email/event_subject.txt", context),
        "body": render_to_string("meters/email/event_message.txt", context),
        "sms": _("%(site)s: meter %(serial)s of account %(number)s reported: %(kind)s.")
        % {
            "site": settings.PORTAL_SITE_NAME,
            "serial": event.meter.serial,
            "number": event.account.number,
            "kind": event.get_kind_display(),
        },
    }


def meter_events_notify(*, as_of: dt.datetime, actor: Actor) -> int:
    """Queue the alarms of new serious events (and of the states members opt in to) on the
    notifications path; return how many
    events were handled (each once).

    The members of the account and of every organisation above it are told, by their
    preferences for the event's topic (a viewer only if they switched it on); the sender
    honours quiet hours and each member's language. The event is marked in the same
    transaction that queues, under a row lock, so two workers never both queue it.
    """
    sent = 0
    # Serious events, and the states (contact lost, valve moved) members may opt in to.
    pending = MeterEvent.objects.filter(
        models.Q(severity__gte=MeterEvent.Severity.SERIOUS)
        | models.Q(kind__in=[k for k, t in _EVENT_TOPICS.items() if t in OPT_IN_TOPICS]),
        notified_at__isnull=True,
        account__isnull=False,
    ).select_related("meter", "account", "account__organisation")[:500]
    for event in pending:
        with transaction.atomic():
            locked = (
                MeterEvent.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=event.pk, notified_at__isnull=True)
                .first()
            )
            if locked is None:
                continue
            assert event.account_id is not None  # noqa: S101 - filtered above
            topic = _EVENT_TOPICS.get(MeterEvent.Kind(event.kind))
            if topic is not None:
                target = Target(
                    key=f"event:{event.pk}",
                    account_id=event.account_id,
                    audience=Audience.EVERYONE,
                    texts=partial(texts_in_every_language, partial(_event_texts, event)),
                )
                notifications_queue(topic=topic, targets=[target], as_of=as_of)
            locked.notified_at = as_of
            locked.save(update_fields=["notified_at"])
            sent += 1
    return sent


def derived_events_detect(*, as_of: dt.datetime, silent_hours: int = 26, nights: int = 3) -> int:
    """Create the events readings imply: meters silent too long, and night flow on water/gas.

    Night flow: every hour from 01:00 to 05:00 (the service point's local time) of one of the
    last `nights` nights had consumption. Events are unique per meter, kind and time, so
    running this again creates nothing new.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO meters_meterevent (meter_id, service_point_id, account_id, kind, severity,
                                           occurred_at, data, created_at)
            SELECT m.id, mi.service_point_id, sup.account_id, 'communication_lost', %(warn)s,
                   m.last_contact_at + make_interval(hours => %(silent)s),
                   jsonb_build_object('last_contact', m.last_contact_at), now()
            FROM meters_meter m
            LEFT JOIN meters_meterinstallation mi ON mi.meter_id = m.id AND mi.removed_at IS NULL
            LEFT JOIN meters_supply sup ON sup.service_point_id = mi.service_point_id
                 AND sup.start <= %(now)s AND (sup."end" IS NULL OR sup."end" > %(now)s)
            WHERE m.last_contact_at < %(now)s - make_interval(hours => %(silent)s)
            ON CONFLICT DO NOTHING
            """,
            {"warn": int(MeterEvent.Severity.WARNING), "silent": silent_hours, "now": as_of},
        )
        lost = cursor.rowcount
        cursor.execute(
            """
            WITH nights AS (
                -- The last few nights, not only the last one: readings often arrive a day
                -- late, and an event already found is not made twice.
                SELECT sp.id AS sp,
                       ((%(now)s AT TIME ZONE sp.time_zone)::date - back
                        + time '01:00') AT TIME ZONE sp.time_zone AS night_start
                FROM meters_servicepoint sp, generate_series(0, %(nights)s - 1) AS back
                WHERE sp.kind IN ('water', 'gas')
            ), flow AS (
                SELECT n.sp, n.night_start, count(*) FILTER (WHERE h.consumption > 0) AS wet
                FROM nights n
                CROSS JOIN LATERAL (
                    SELECT * FROM meters_hourly(n.night_start, n.night_start + interval '4 hours') h
                    WHERE h.service_point_id = n.sp AND h.direction = 'import') h
                WHERE n.night_start + interval '4 hours' <= %(now)s
                GROUP BY n.sp, n.night_start
            )
            INSERT INTO meters_meterevent (meter_id, service_point_id, account_id, kind, severity,
                                           occurred_at, data, created_at)
            SELECT mi.meter_id, f.sp, sup.account_id, 'night_flow', %(serious)s,
                   f.night_start + interval '4 hours', '{"hours": 4}'::jsonb, now()
            FROM flow f
            JOIN meters_meterinstallation mi ON mi.service_point_id = f.sp
             AND mi.installed_at <= f.night_start
             AND (mi.removed_at IS NULL OR mi.removed_at > f.night_start)
            LEFT JOIN meters_supply sup ON sup.service_point_id = f.sp
             AND sup.start <= f.night_start AND (sup."end" IS NULL OR sup."end" > f.night_start)
            WHERE f.wet = 4
            ON CONFLICT DO NOTHING
            """,
            {"now": as_of, "serious": int(MeterEvent.Severity.SERIOUS), "nights": nights},
        )
        return int(lost + cursor.rowcount)
