"""Celery tasks: build a resident's data export, and the exports' housekeeping (queue billing)."""

from __future__ import annotations

from django.utils import timezone

from billing.services.exports import export_build, exports_sweep
from portal.audit.actors import SystemActor
from portal.celery import app


@app.task(acks_late=True, reject_on_worker_lost=True)
def export_build_task(*, export_id: int, **kwargs: object) -> str:
    """Build the export (a finished one is left alone; one another worker holds is skipped)."""
    export = export_build(
        export_id=export_id,
        actor=SystemActor("task:billing.export_build"),
        as_of=timezone.now(),
    )
    return export.status if export is not None else "busy"


@app.task(acks_late=True, reject_on_worker_lost=True)
def exports_sweep_task(**kwargs: object) -> tuple[int, int]:
    """Beat: delete expired exports' files and hand stalled exports to a worker again."""
    return exports_sweep(as_of=timezone.now())
