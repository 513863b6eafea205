"""Celery interfaces of the meters app: ids in, one service call, idempotent."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import connection
from django.utils import timezone

from meters.ingest import pipeline
from meters.selectors.imports import batches_needing_a_worker
from meters.services import events as event_services
from meters.services import inbound as inbound_services
from meters.services import readings as reading_services
from portal.audit.actors import SystemActor
from portal.celery import app

logger = logging.getLogger(__name__)


@app.task(acks_late=True, reject_on_worker_lost=True)
def import_batch_task(*, batch_id: int, **kwargs: object) -> str:
    """Run or resume one import batch (queue readings). A duplicate delivery finds the batch
    locked or finished and does nothing."""
    batch = pipeline.run(
        batch_id=batch_id,
        actor=SystemActor("task:meters.import_batch"),
        as_of=timezone.now(),
    )
    return batch.status if batch is not None else "busy"


@app.task(acks_late=True)
def import_sweeper_task(**kwargs: object) -> int:
    """Re-queue batches whose worker died (their advisory lock is free), that were never
    picked up, or whose wait for their next attempt is over; the batches resume from their
    checkpoint, and one whose attempts are used up ends failed (it never loops)."""
    requeued = 0
    now = timezone.now()
    for batch_id in batches_needing_a_worker(
        queued_before=now - dt.timedelta(minutes=1), as_of=now
    ):
        if not pipeline.batch_is_locked(batch_id):
            import_batch_task.delay(batch_id=batch_id)
            requeued += 1
    return requeued


@app.task(acks_late=True)
def import_inbox_task(**kwargs: object) -> int:
    """Turn the files dropped in the inbox folder into batches (a file at most once)."""
    return inbound_services.inbox_collect(
        actor=SystemActor("task:meters.import_inbox"), as_of=timezone.now()
    )


@app.task(acks_late=True)
def inbound_flush_task(**kwargs: object) -> int:
    """Gather live messages (ChirpStack HTTP, MQTT) into import batches."""
    return inbound_services.inbound_flush(
        actor=SystemActor("task:meters.inbound_flush"), as_of=timezone.now()
    )


@app.task(acks_late=True)
def inbound_purge_task(**kwargs: object) -> int:
    """Forget live messages imported more than a week ago (daily, from beat)."""
    return inbound_services.inbound_purge(before=timezone.now() - dt.timedelta(days=7))


@app.task(acks_late=True)
def meter_events_notify_task(**kwargs: object) -> int:
    """Queue the alarms of new serious meter events for members (each event once)."""
    return event_services.meter_events_notify(
        as_of=timezone.now(), actor=SystemActor("task:meters.events_notify")
    )


@app.task(acks_late=True)
def derived_events_task(**kwargs: object) -> int:
    """Silent meters and night flow (hourly, from beat)."""
    created = event_services.derived_events_detect(as_of=timezone.now())
    if created:
        meter_events_notify_task.delay()
    return created


@app.task(acks_late=True)
def rollups_rebuild_task(*, service_point_id: int, **kwargs: object) -> int:
    """Rebuild a service point's rollups (after its zone changed); idempotent, so a
    redelivery only repeats the work. Returns the transactions it took."""
    result = reading_services.rollups_rebuild(
        service_point_ids=[service_point_id], actor=SystemActor("task:meters.rollups_rebuild")
    )
    return result.transactions


@app.task(acks_late=True)
def partition_maintenance_task(**kwargs: object) -> None:
    """Create the coming months' reading partitions; warn if the default partition has rows."""
    with connection.cursor() as cursor:
        cursor.execute("CALL partman.run_maintenance_proc()")
        cursor.execute("SELECT count(*) FROM meters_reading_default")
        (stray,) = cursor.fetchone()
    if stray:
        logger.error("%s readings are in the default partition: move them out", stray)
