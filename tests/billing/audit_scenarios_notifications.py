"""Audit scenarios of billing.services.notifications (merged by
tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable

from billing.services import notifications
from portal.audit.actors import UserActor
from portal.audit.events import AuditEvent
from tests.conftest import World

SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {
    "billing.services.notifications.notification_preference_set": (
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
    "billing.services.notifications.notification_preferences_set": (
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
    "billing.services.notifications.notifications_queue_for_warnings": (
        "called inside shortage_warnings_run, whose one entry records the run"
    ),
    "billing.services.notifications.notifications_queue_for_bills": (
        "called inside bill_notices_queue, whose one entry records the notices"
    ),
    "billing.services.notifications.notifications_send": (
        "delivery bookkeeping (status, error, sent_at on each notification row) of messages "
        "whose creation is audited"
    ),
}
