"""Celery tasks: the daily prepaid charge and the disconnection sweep (queue billing)."""

from __future__ import annotations

from django.utils import timezone

from billing.services.charging import prepaid_charge_due
from billing.services.supply import supply_disconnect_due
from portal.audit.actors import SystemActor
from portal.celery import app


@app.task(acks_late=True, reject_on_worker_lost=True)
def prepaid_charge_task(**kwargs: object) -> int:
    """Charge yesterday where it is due (hourly; a day already charged is skipped)."""
    runs = prepaid_charge_due(as_of=timezone.now(), actor=SystemActor("task:billing.charge"))
    return sum(run.charged for run in runs)


@app.task(acks_late=True)
def disconnect_sweep_task(**kwargs: object) -> int:
    """Queue the disconnections that were waiting for working hours."""
    return supply_disconnect_due(
        as_of=timezone.now(), actor=SystemActor("task:billing.disconnect_sweep")
    )
