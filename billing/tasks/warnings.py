"""Celery tasks: shortage warnings and bill notices (the sender is portal.notifications.tasks).

Thin interfaces: they take the time once and call one service. The warning run and the bill
notices are idempotent (unique constraints), so beat may run them as often as it likes.
"""

from __future__ import annotations

from django.utils import timezone

from billing.services.warnings import bill_notices_queue, shortage_warnings_run
from portal.audit.actors import SystemActor
from portal.celery import app


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
