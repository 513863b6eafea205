"""Audit scenarios of portal.notifications.services (merged by
tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable

from portal.audit.actors import UserActor
from portal.audit.events import AuditEvent
from portal.notifications import services as notifications
from tests.conftest import World

SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {
    "portal.notifications.services.notification_preference_set": (
        lambda w: (
            lambda: notifications.notification_preference_set(
                user=w.alice,
                topic="shortage",
                email=False,
                sms=True,
                phone="+886912345678",
                actor=UserActor(user=w.alice),
            )
        ),
        AuditEvent.NOTIFICATION_PREFERENCE_SAVED,
    ),
    "portal.notifications.services.notification_preferences_set": (
        lambda w: (
            lambda: notifications.notification_preferences_set(
                user=w.alice,
                changes=[{"topic": "shortage", "email": False, "sms": False}],
                actor=UserActor(user=w.alice),
            )
        ),
        AuditEvent.NOTIFICATION_PREFERENCE_SAVED,
    ),
}

EXEMPT: dict[str, str] = {
    "portal.notifications.services.notifications_queue": (
        "called inside its producer's service (warning run, bill notices, meter alarms), whose "
        "entry records the change"
    ),
    "portal.notifications.services.texts_in_every_language": "renders text, changes nothing",
    "portal.notifications.services.notifications_send": (
        "delivery bookkeeping (status, error, sent_at on each notification row) of messages "
        "whose creation is audited"
    ),
}
