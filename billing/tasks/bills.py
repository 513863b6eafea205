"""Celery tasks: the monthly bill run and bill PDFs (queue billing; all idempotent)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from billing.pdf import bill_pdf_store
from billing.services.bills import bill_run_execute
from portal.audit.actors import SystemActor
from portal.celery import app
from portal.lib.periods import previous_month


@app.task(acks_late=True, reject_on_worker_lost=True)
def bill_run_task(*, period_start: str, **kwargs: object) -> int:
    """Run (or resume, or find finished) the bill run of the month starting `period_start`."""
    run = bill_run_execute(
        period_start=dt.date.fromisoformat(period_start),
        actor=SystemActor("task:billing.bill_run"),
        as_of=timezone.now(),
    )
    return run.bills


@app.task(acks_late=True, reject_on_worker_lost=True)
def bill_run_monthly_task(**kwargs: object) -> int:
    """Beat: bill the month that ended (every time zone has left it when this runs)."""
    now = timezone.now()
    run = bill_run_execute(
        period_start=previous_month(now.date()),
        actor=SystemActor("task:billing.bill_run"),
        as_of=now,
    )
    return run.bills


@app.task(acks_late=True, reject_on_worker_lost=True)
def bill_pdf_render_task(*, bill_id: int, language: str = "en", **kwargs: object) -> str:
    """Render a bill's PDF in `language` into storage (the same file again when re-run)."""
    return bill_pdf_store(bill_id=bill_id, language=language)
