"""Celery tasks: the daily prepaid charge, its sweeper and the disconnection sweep (queue
billing)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from billing.selectors import charge_run_is_locked, charge_runs_running
from billing.services.charging import prepaid_charge_run, prepaid_charge_run_resume
from billing.services.supply import supply_disconnect_due
from portal.audit.actors import SystemActor
from portal.celery import app

ACTOR = SystemActor("task:billing.charge")


@app.task(acks_late=True, reject_on_worker_lost=True)
def prepaid_charge_task(*, as_of: str | None = None, **kwargs: object) -> int:
    """Charge yesterday where it is due (hourly; a day already charged is skipped), as a run
    that the sweeper resumes if this worker dies. `as_of` (ISO 8601) charges as of then."""
    when = dt.datetime.fromisoformat(as_of) if as_of else timezone.now()
    return prepaid_charge_run(as_of=when, actor=ACTOR).charged


@app.task(acks_late=True, reject_on_worker_lost=True)
def prepaid_charge_resume_task(*, run_id: int, **kwargs: object) -> int:
    """Charge what a run whose worker died left (a duplicate delivery finds it locked or
    finished and does nothing)."""
    run = prepaid_charge_run_resume(run_id=run_id, actor=ACTOR, as_of=timezone.now())
    return run.charged if run is not None else 0


@app.task(acks_late=True)
def prepaid_charge_sweeper_task(**kwargs: object) -> int:
    """Queue again the charge runs whose worker died: still running, their lock free."""
    requeued = 0
    for run_id in charge_runs_running():
        if not charge_run_is_locked(run_id=run_id):
            prepaid_charge_resume_task.delay(run_id=run_id)
            requeued += 1
    return requeued


@app.task(acks_late=True)
def disconnect_sweep_task(**kwargs: object) -> int:
    """Queue the disconnections that were waiting for working hours."""
    return supply_disconnect_due(
        as_of=timezone.now(), actor=SystemActor("task:billing.disconnect_sweep")
    )
