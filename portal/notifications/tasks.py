"""Celery task: the notification sender.

A thin interface: it takes the time once and calls one service. The sender claims rows under
SKIP LOCKED, so several workers can run it at once, and stops after a bounded number of
messages, well inside the broker's visibility timeout (5 min).
"""

from __future__ import annotations

from django.utils import timezone

from portal.celery import app
from portal.notifications.services import notifications_send

# Sending one message through SMTP or a gateway is slow next to a database row; this bound
# stays far inside the visibility timeout, and the next minute's run goes on with the rest.
SEND_LIMIT = 1000


@app.task(acks_late=True)
def notifications_send_task(**kwargs: object) -> dict[str, int]:
    """Send queued notifications outside quiet hours (every minute, queue notifications)."""
    result = notifications_send(as_of=timezone.now(), limit=SEND_LIMIT)
    return {"sent": result.sent, "failed": result.failed}
