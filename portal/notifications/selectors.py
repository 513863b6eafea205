"""Reads of notifications and preferences."""

from __future__ import annotations

from portal.notifications.models import Notification, NotificationPreference


def notification_preference_for(*, user_id: int, topic: str) -> NotificationPreference | None:
    """Return the member's stored preference for a topic (None: the defaults apply)."""
    return NotificationPreference.objects.filter(user_id=user_id, topic=topic).first()


def notifications_about(*, key: str) -> list[Notification]:
    """Return the deliveries of one thing ("warning:12"), in the order they were queued."""
    return list(Notification.objects.filter(key=key).select_related("user").order_by("id"))
