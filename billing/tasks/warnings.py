"""Celery tasks: shortage warnings, bill notices and the notification sender.

Thin interfaces: they take the time once and call one service. The warning run and the bill
notices are idempotent (unique constraints), so beat may run them as often as it likes; the
sender claims rows under SKIP LOCKED, so several workers can run it at once. The sender stops
after a bounded number of messages, well inside the broker's visibility timeout (5 min).
"""

from __future__ import annotations

from django.utils import timezone

from billing.services.notifications import notifications_send
from billing.services.warnings import bill_notices_queue, shortage_warnings_run
from portal.audit.actors import SystemActor
from portal.celery import app

# Sending takes about 0.1-1 s per message through SMTP or a gateway; 1,000 stays far inside the
# five minutes, and the next minute's run goes on with the rest.
SEND_LIMIT = 1000


@app.task(acks_late=True)
def shortage_warnings_task(**kwargs: object) -> dict[str, int]:
    """Warn accounts short of credit and escalate unresolved warnings (hourly, from beat)."""
    result = shortage_warnings_run(
        as_of=timezone.now(), actor=SystemActor("task:billing.shortage_warnings")
    )
    return {
        "warnings": result.warnings,
        "escalations": result.escalations,
        "notifications": result.notifications,
    }


@app.task(acks_late=True)
def bill_notices_task(**kwargs: object) -> int:
    """Queue "bill issued" and "bill overdue" notices (hourly, from beat)."""
    return bill_notices_queue(as_of=timezone.now(), actor=SystemActor("task:billing.bill_notices"))


@app.task(acks_late=True)
def notifications_send_task(**kwargs: object) -> dict[str, int]:
    """Send queued notifications outside quiet hours (every minute, queue notifications)."""
    result = notifications_send(as_of=timezone.now(), limit=SEND_LIMIT)
    return {"sent": result.sent, "failed": result.failed}
