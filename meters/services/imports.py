"""Import batches: create, queue, run (or resume) to their end, retry or fail."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from meters.exceptions import MeterError
from meters.ingest import pipeline
from meters.ingest.formats import chirpstack, dsmr, espi, jsonbulk
from meters.ingest.staging import BatchError
from meters.models import (
    ImportBatch,
)
from meters.selectors import find_previous_batch
from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.timezones import available_time_zones
from portal.tenancy.models import Organisation

logger = logging.getLogger(__name__)


class Readable(Protocol):
    """What a payload is read from: a file, an upload, a request body."""

    def read(self, size: int = ..., /) -> bytes: ...


PARSERS: dict[str, pipeline.Parser | None] = {
    ImportBatch.Format.CSV: None,  # straight into COPY
    ImportBatch.Format.DSMR: dsmr.parse,
    ImportBatch.Format.ESPI: espi.parse,
    ImportBatch.Format.CHIRPSTACK: chirpstack.parse,
    ImportBatch.Format.JSON: jsonbulk.parse,
}


# --- Import batches --------------------------------------------------------------------------


def _storage_dir() -> Path:
    path = Path(settings.PORTAL_IMPORT_STORAGE)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _store_payload(content: Readable) -> tuple[str, int, str]:
    """Stream `content` into content-addressed storage; return (sha256, size, path)."""
    digest = hashlib.sha256()
    size = 0
    directory = _storage_dir()
    handle, temp_name = tempfile.mkstemp(dir=directory, prefix=".incoming-")
    try:
        with os.fdopen(handle, "wb") as out:
            while chunk := content.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        final = directory / sha[:2] / sha
        final.parent.mkdir(exist_ok=True)
        os.replace(temp_name, final)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return sha, size, str(final)


@transaction.atomic
def batch_create(
    *,
    source: str,
    fmt: str,
    content: Readable,
    actor: Actor,
    original_name: str = "",
    organisation: Organisation | None = None,
    register_meters: bool = False,
    read_at: dt.datetime | None = None,
    reprocess: bool = False,
    time_zone: str = "",
    as_of: dt.datetime,
    meter_serial: str = "",
    dsmr_spec: str = "",
) -> ImportBatch:
    """Store a payload and queue it for import; the same content again is a no-op.

    `meter_serial` names the meter that sent telegrams carrying no equipment identifier;
    `dsmr_spec` forces a DSMR telegram specification (meters.ingest.formats.dsmr.SPECS).

    The payload is kept (content-addressed) so that a batch can be parsed again. Unless
    `reprocess` is set, content identical to an earlier batch becomes a batch marked as its
    duplicate, which imports nothing.

    `time_zone` is the zone of the service points the batch registers where the file states
    none (else the organisation's).

    :raises MeterError: for an unknown format or time zone, or register_meters asked by a
        non-staff actor.
    """
    if fmt not in PARSERS:
        raise MeterError(f"Unknown format {fmt!r}.")
    if dsmr_spec and (fmt != ImportBatch.Format.DSMR or dsmr_spec not in dsmr.SPECS):
        raise MeterError(f"Unknown DSMR specification {dsmr_spec!r} (or not a DSMR batch).")
    if time_zone and time_zone not in available_time_zones():
        raise MeterError(f"Unknown time zone {time_zone!r}.")
    if (
        register_meters
        and not (isinstance(actor, UserActor) and actor.user.is_staff)
        and not (source == ImportBatch.Source.COMMAND)
    ):
        raise MeterError("Only staff may register unknown meters through an import.")
    sha, size, path = _store_payload(content)
    previous = (
        None
        if reprocess
        else find_previous_batch(
            sha256=sha,
            fmt=fmt,
            organisation_id=organisation.pk if organisation else None,
            register_meters=register_meters,
            read_at=read_at,
            meter_serial=meter_serial,
            dsmr_spec=dsmr_spec,
        )
    )
    batch = ImportBatch.objects.create(
        source=source,
        format=fmt,
        original_name=original_name[:255],
        sha256=sha,
        size=size,
        payload_path=path,
        organisation=organisation,
        created_by=actor.user if isinstance(actor, UserActor) else None,
        created_by_label=actor.label,
        register_meters=register_meters,
        read_at=read_at,
        meter_serial=meter_serial[:64],
        dsmr_spec=dsmr_spec,
        time_zone=time_zone,
        received_at=as_of,
        duplicate_of=previous,
        status=ImportBatch.Status.DUPLICATE if previous else ImportBatch.Status.QUEUED,
        finished_at=as_of if previous else None,
    )
    audit_record(
        actor=actor,
        event=AuditEvent.IMPORT_BATCH_CREATED,
        organisation=organisation,
        target=batch,
        data={
            "batch": str(batch.public_id),
            "format": fmt,
            "size": size,
            "sha256": sha,
            "file": original_name,
            "duplicate_of": str(previous.public_id) if previous else None,
        },
    )
    if previous is None:
        from meters.tasks import import_batch_task

        batch_id = batch.pk
        transaction.on_commit(lambda: import_batch_task.delay(batch_id=batch_id))
    return batch


def batch_process(*, batch_id: int, actor: Actor, as_of: dt.datetime) -> ImportBatch | None:
    """Run (or resume) a batch to its end; None if another worker is running it.

    Every batch ends, within PORTAL_IMPORT_MAX_ATTEMPTS attempts: a file-level problem fails it
    at once with its message; any other error rolls back the stage it happened in (the
    checkpoints of the stages before it stay), is recorded, and the batch waits for the
    sweeper to start its next attempt after PORTAL_IMPORT_RETRY_BACKOFF. The last attempt's
    error fails the batch, with the exception's class. A worker killed mid-batch has used up
    its attempt too: the sweeper re-queues the batch, and it fails here when none is left.
    """
    try:
        with pipeline.batch_lock(batch_id):
            batch = ImportBatch.objects.get(pk=batch_id)
            if batch.finished:
                return batch
            max_attempts = settings.PORTAL_IMPORT_MAX_ATTEMPTS
            if batch.attempts >= max_attempts:
                # Started that many times and never recorded an end: each worker died in it.
                _batch_fail(
                    batch,
                    actor=actor,
                    message=(
                        f"The import was started {batch.attempts} times and never finished: "
                        "the worker running it stopped each time."
                    ),
                    error_class="WorkerLost",
                )
                return batch
            batch.status = ImportBatch.Status.RUNNING
            batch.attempts += 1
            batch.next_attempt_at = None
            batch.started_at = batch.started_at or as_of
            batch.stage = batch.stage or ImportBatch.Stage.PARSING
            batch.save(
                update_fields=["status", "attempts", "next_attempt_at", "started_at", "stage"]
            )
            try:
                _run_stages(batch, actor=actor, as_of=as_of)
            except BatchError as error:
                _batch_fail(batch, actor=actor, message=str(error))
            except Exception as error:
                logger.exception(
                    "import batch %s: attempt %s of %s failed: %s: %s",
                    batch.pk,
                    batch.attempts,
                    max_attempts,
                    _error_class(error),
                    error,
                )
                _batch_retry_or_fail(batch, actor=actor, error=error, max_attempts=max_attempts)
            return batch
    except pipeline.BatchBusy:
        return None


def _error_class(error: BaseException) -> str:
    """The dotted class of what went wrong: the driver's error under Django's wrapper
    (psycopg.errors.NumericValueOutOfRange rather than django.db.utils.DataError)."""
    cause = error.__cause__
    if isinstance(error, DatabaseError) and cause is not None:
        error = cause
    kind = type(error)
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    return module + kind.__qualname__


def _batch_retry_or_fail(
    batch: ImportBatch, *, actor: Actor, error: Exception, max_attempts: int
) -> None:
    """Record an unexpected error: the batch waits for its next attempt, or, after the last,
    fails. If even that cannot be written (the database went away), the error propagates
    and the sweeper finds the batch running with a free lock later."""
    error_class = _error_class(error)
    message = str(error).strip() or error_class
    # The stage's transaction rolled back; the object may hold counts it never saved.
    batch.refresh_from_db()
    if batch.attempts >= max_attempts:
        _batch_fail(
            batch,
            actor=actor,
            message=(
                f"The import stopped on an unexpected error in each of its {batch.attempts} "
                f"attempts; the last one ({error_class}): {message}"
            ),
            error_class=error_class,
        )
        return
    backoff = settings.PORTAL_IMPORT_RETRY_BACKOFF or (0,)
    wait = backoff[min(batch.attempts, len(backoff)) - 1]
    batch.status = ImportBatch.Status.QUEUED
    batch.next_attempt_at = timezone.now() + dt.timedelta(seconds=wait)
    batch.error = _printable(message)
    batch.error_class = error_class[:200]
    batch.save(update_fields=["status", "next_attempt_at", "error", "error_class"])


def _printable(message: str) -> str:
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in message[:5000])


def _batch_fail(batch: ImportBatch, *, actor: Actor, message: str, error_class: str = "") -> None:
    with transaction.atomic():
        pipeline.fail(batch, message, now=timezone.now(), error_class=error_class)
        audit_record(
            actor=actor,
            event=AuditEvent.IMPORT_BATCH_FAILED,
            organisation=batch.organisation,
            target=batch,
            data={
                "batch": str(batch.public_id),
                "error": message[:500],
                "error_class": error_class,
                "attempts": batch.attempts,
            },
        )


def _run_stages(batch: ImportBatch, *, actor: Actor, as_of: dt.datetime) -> None:
    if batch.stage in (
        ImportBatch.Stage.VALIDATING,
        ImportBatch.Stage.MERGING,
        ImportBatch.Stage.FINISHING,
    ) and pipeline.staging_lost(batch):
        pipeline.restart_from_the_file(batch)
    if batch.stage == ImportBatch.Stage.PARSING:
        pipeline.stage_payload(batch, PARSERS[batch.format])
    if batch.stage == ImportBatch.Stage.VALIDATING:
        subtree = None
        if batch.organisation_id is not None:
            from portal.tenancy.selectors import organisation_subtree_ids

            assert batch.organisation is not None  # noqa: S101 - organisation_id is set
            subtree = organisation_subtree_ids(organisation=batch.organisation)
        pipeline.resolve(batch, subtree=subtree)
    if batch.stage == ImportBatch.Stage.MERGING:
        plan = pipeline.chunk_plan(batch)
        for registers in plan[batch.chunks_done :]:
            pipeline.merge_chunk(batch, registers)
        pipeline.check_accounted(batch)
        batch.stage = ImportBatch.Stage.FINISHING
        batch.save(update_fields=["stage"])
    if batch.stage == ImportBatch.Stage.FINISHING:
        with transaction.atomic():
            new_events = pipeline.finish(batch, now=timezone.now())
            audit_record(
                actor=actor,
                event=AuditEvent.IMPORT_BATCH_FINISHED,
                organisation=batch.organisation,
                target=batch,
                data={
                    "batch": str(batch.public_id),
                    "status": batch.status,
                    **batch.counts,
                    "events": new_events,
                },
            )
            if new_events:
                from meters.tasks import meter_events_notify_task

                transaction.on_commit(meter_events_notify_task.delay)
