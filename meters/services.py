"""Writes of the meters app: import batches, reading edits, events, commands, supplies, fleet.

Every service takes `actor=` and records its audit entry in its own transaction. The import
pipeline itself (meters.ingest) writes readings with set-wise SQL; these services start it,
resume it and record its outcome.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from meters.exceptions import MeterError, ReadingNotFound
from meters.ingest import pipeline
from meters.ingest import sql as q
from meters.ingest.formats import chirpstack, dsmr, espi, jsonbulk
from meters.ingest.staging import BatchError
from meters.models import (
    ImportBatch,
    MeterCommand,
    MeterEvent,
    Quality,
    Register,
    Rule,
    ServicePoint,
    Supply,
)
from meters.selectors import find_previous_batch
from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes
from portal.lib.timezones import available_time_zones
from portal.notifications.services import Target, notifications_queue, texts_in_every_language
from portal.notifications.topics import Topic
from portal.tenancy.models import Account, Organisation
from portal.tenancy.selectors import Audience

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
            batch.stage = batch.stage or "parsing"
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
    if batch.stage in ("validating", "merging", "finishing") and pipeline.staging_lost(batch):
        pipeline.restart_from_the_file(batch)
    if batch.stage == "parsing":
        pipeline.stage_payload(batch, PARSERS[batch.format])
    if batch.stage == "validating":
        subtree = None
        if batch.organisation_id is not None:
            from portal.tenancy.selectors import organisation_subtree_ids

            assert batch.organisation is not None  # noqa: S101 - organisation_id is set
            subtree = organisation_subtree_ids(organisation=batch.organisation)
        pipeline.resolve(batch, subtree=subtree)
    if batch.stage == "merging":
        plan = pipeline.chunk_plan(batch)
        for registers in plan[batch.chunks_done :]:
            pipeline.merge_chunk(batch, registers)
        pipeline.check_accounted(batch)
        batch.stage = "finishing"
        batch.save(update_fields=["stage"])
    if batch.stage == "finishing":
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


def inbox_collect(*, actor: Actor, as_of: dt.datetime, settle_seconds: float = 30) -> int:
    """Turn the files dropped in the inbox folder into batches; return how many were made.

    A file still being written (changed in the last `settle_seconds`) waits for the next run.
    Each file is claimed by renaming it into `processing/` first, so two runs never take the
    same file; it then moves to `processed/` (or `unrecognised/` when its name tells no
    format). A crash between the batch and the move leaves the file claimed: the next run
    takes it again and its batch is recognised as a duplicate.
    """
    import shutil

    from meters.ingest.formats import format_for_name

    inbox = Path(settings.PORTAL_IMPORT_INBOX)
    if not inbox.is_dir():
        return 0
    processing, done, unrecognised = (
        inbox / "processing",
        inbox / "processed",
        inbox / "unrecognised",
    )
    for folder in (processing, done, unrecognised):
        folder.mkdir(exist_ok=True)
    now = as_of.timestamp()
    for path in sorted(p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")):
        if now - path.stat().st_mtime < settle_seconds:
            continue
        try:
            path.rename(processing / path.name)
        except FileNotFoundError:
            continue  # another run claimed it
    created = 0
    for path in sorted(p for p in processing.iterdir() if p.is_file()):
        fmt = format_for_name(path.name)
        if fmt is None:
            shutil.move(path, unrecognised / path.name)
            logger.warning("inbox file %s has no known format; moved aside", path.name)
            continue
        with path.open("rb") as content:
            batch_create(
                source=ImportBatch.Source.INBOX,
                fmt=fmt,
                content=content,
                original_name=path.name,
                actor=actor,
                as_of=as_of,
            )
        shutil.move(path, done / f"{as_of:%Y%m%dT%H%M%S}-{path.name}")
        created += 1
    return created


# --- Reading edits -----------------------------------------------------------------------


def _account_at(register: Register, ts: dt.datetime) -> Account | None:
    supply = (
        Supply.objects.filter(
            service_point__installations__meter_id=register.meter_id,
            service_point__installations__installed_at__lt=ts,
            start__lt=ts,
        )
        .filter(models.Q(end__isnull=True) | models.Q(end__gte=ts))
        .select_related("account")
        .first()
    )
    return supply.account if supply else None


@transaction.atomic
def reading_edit(
    *,
    register: Register,
    ts: dt.datetime,
    reason: str,
    actor: Actor,
    new_value: int | None = None,
    new_delta: int | None = None,
) -> None:
    """Correct a reading: the original is kept in ReadingEdit, rollups are recomputed.

    :raises ReadingNotFound: if the register has no reading at `ts`.
    :raises ValidationError: without a reason or without a new value.
    """
    from meters.models import ReadingEdit

    if not reason.strip():
        raise ValidationError(_("A reason is required to edit a reading."))
    if new_value is None and new_delta is None:
        raise ValidationError(_("Give a new register value or a new interval consumption."))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [q.REGISTER_LOCK + register.pk])
        cursor.execute(
            "SELECT value, delta, quality, flags, start_ts FROM meters_reading "
            "WHERE register_id = %s AND ts = %s FOR UPDATE",
            [register.pk, ts],
        )
        row = cursor.fetchone()
        if row is None:
            raise ReadingNotFound
        old_value, old_delta, old_quality, old_flags, start_ts = row
        ReadingEdit.objects.create(
            register=register,
            ts=ts,
            old_value=old_value,
            old_delta=old_delta,
            old_quality=old_quality,
            old_flags=old_flags,
            new_value=new_value,
            new_delta=new_delta,
            reason=reason.strip(),
            edited_by=actor.user if isinstance(actor, UserActor) else None,
        )
        value = new_value if new_value is not None else old_value
        delta = new_delta
        if (
            delta is None
            and new_value is not None
            and old_value is not None
            and old_delta is not None
        ):
            delta = old_delta + (new_value - old_value)
        if delta is None:
            delta = old_delta
        cursor.execute(
            "UPDATE meters_reading SET value = %s, delta = %s, quality = %s, flags = %s "
            "WHERE register_id = %s AND ts = %s",
            [
                value,
                delta,
                int(Quality.EDITED),
                (old_flags & ~int(q.SUSPECT)) | int(Rule.EDITED),
                register.pk,
                ts,
            ],
        )
        # The next reading's consumption follows the corrected register value.
        next_end = ts
        if new_value is not None:
            cursor.execute(
                "UPDATE meters_reading SET delta = value - %s "
                "WHERE register_id = %s AND ts = (SELECT min(ts) FROM meters_reading "
                "WHERE register_id = %s AND ts > %s) AND value IS NOT NULL "
                "AND value >= %s AND flags & %s = 0 RETURNING ts",
                [value, register.pk, register.pk, ts, value, int(Rule.EDITED)],
            )
            following = cursor.fetchone()
            if following:
                next_end = following[0]
        cursor.execute(
            "CREATE TEMP TABLE m_aff ON COMMIT DROP AS "
            "SELECT %s::bigint AS register_id, %s::timestamptz AS lo, %s::timestamptz AS hi",
            [register.pk, start_ts or ts, next_end],
        )
    pipeline.refresh_rollups(dict(q.PARAMS))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS m_aff, m_sp, m_days")
    audit_record(
        actor=actor,
        event=AuditEvent.READING_EDITED,
        account=_account_at(register, ts),
        data={
            "register": str(register),
            "ts": ts,
            "reason": reason.strip(),
            "changes": {
                "value": {"before": old_value, "after": value},
                "delta": {"before": old_delta, "after": delta},
            },
        },
    )


# --- Events and commands -------------------------------------------------------------------


@transaction.atomic
def meter_event_acknowledge(*, event: MeterEvent, actor: Actor, as_of: dt.datetime) -> MeterEvent:
    """Mark an event as seen and handled; acknowledging twice changes nothing."""
    event = MeterEvent.objects.select_for_update().select_related("meter").get(pk=event.pk)
    if event.acknowledged_at is not None:
        return event
    event.acknowledged_at = as_of
    event.acknowledged_by = actor.user if isinstance(actor, UserActor) else None
    event.save(update_fields=["acknowledged_at", "acknowledged_by"])
    audit_record(
        actor=actor,
        event=AuditEvent.METER_EVENT_ACKNOWLEDGED,
        account=event.account,
        target=event,
        data={"kind": event.kind, "meter": event.meter.serial, "occurred_at": event.occurred_at},
    )
    return event


@transaction.atomic
def meter_command_create(
    *, meter_id: int, command: str, reason: str, idempotency_key: str, actor: Actor
) -> MeterCommand:
    """Queue a command for a meter's head-end; the same key again returns the first command."""
    existing = MeterCommand.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    order = MeterCommand.objects.create(
        meter_id=meter_id,
        command=command,
        reason=reason[:300],
        idempotency_key=idempotency_key,
        requested_by_label=actor.label,
    )
    order.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.METER_COMMAND_CREATED,
        target=order,
        data={"command": command, "meter": order.meter.serial, "reason": reason[:300]},
    )
    return order


# Which members' topic each kind of event is; kinds without one (battery, power) stay with the
# utility's staff.
_EVENT_TOPICS = {
    MeterEvent.Kind.LEAK: Topic.LEAK,
    MeterEvent.Kind.BURST: Topic.LEAK,
    MeterEvent.Kind.BACKFLOW: Topic.LEAK,
    MeterEvent.Kind.NIGHT_FLOW: Topic.LEAK,
    MeterEvent.Kind.TAMPER_MAGNETIC: Topic.TAMPER,
    MeterEvent.Kind.TAMPER_TILT: Topic.TAMPER,
    MeterEvent.Kind.TAMPER_COVER: Topic.TAMPER,
    MeterEvent.Kind.COMMUNICATION_LOST: Topic.COMMS_LOSS,
    MeterEvent.Kind.VALVE_OPEN: Topic.VALVE,
    MeterEvent.Kind.VALVE_CLOSED: Topic.VALVE,
}


def _event_texts(event: MeterEvent) -> dict[str, str]:
    """Subject, body and text message of an event's alarm, in the active language."""
    from django.template.loader import render_to_string

    assert event.account is not None  # noqa: S101 - only events with an account are sent
    context = {
        "event": event,
        "account": event.account,
        "meter": event.meter,
        "link": f"{settings.PORTAL_BASE_URL.rstrip('/')}/a/{event.account.public_id}/",
        "site_name": settings.PORTAL_SITE_NAME,
    }
    return {
        "subject": render_to_string("meters/email/event_subject.txt", context),
        "body": render_to_string("meters/email/event_message.txt", context),
        "sms": _("%(site)s: meter %(serial)s of account %(number)s reported: %(kind)s.")
        % {
            "site": settings.PORTAL_SITE_NAME,
            "serial": event.meter.serial,
            "number": event.account.number,
            "kind": event.get_kind_display(),
        },
    }


def meter_events_notify(*, as_of: dt.datetime, actor: Actor) -> int:
    """Queue the alarms of new serious events on the notifications path; return how many
    events were handled (each once).

    The members of the account and of every organisation above it are told, by their
    preferences for the event's topic (a viewer only if they switched it on); the sender
    honours quiet hours and each member's language. The event is marked in the same
    transaction that queues, under a row lock, so two workers never both queue it.
    """
    sent = 0
    pending = MeterEvent.objects.filter(
        notified_at__isnull=True,
        severity__gte=MeterEvent.Severity.SERIOUS,
        account__isnull=False,
    ).select_related("meter", "account", "account__organisation")[:500]
    for event in pending:
        with transaction.atomic():
            locked = (
                MeterEvent.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=event.pk, notified_at__isnull=True)
                .first()
            )
            if locked is None:
                continue
            assert event.account_id is not None  # noqa: S101 - filtered above
            topic = _EVENT_TOPICS.get(MeterEvent.Kind(event.kind))
            if topic is not None:
                target = Target(
                    key=f"event:{event.pk}",
                    account_id=event.account_id,
                    audience=Audience.EVERYONE,
                    texts=partial(texts_in_every_language, partial(_event_texts, event)),
                )
                notifications_queue(topic=topic, targets=[target], as_of=as_of)
            locked.notified_at = as_of
            locked.save(update_fields=["notified_at"])
            sent += 1
    return sent


def derived_events_detect(*, as_of: dt.datetime, silent_hours: int = 26, nights: int = 3) -> int:
    """Create the events readings imply: meters silent too long, and night flow on water/gas.

    Night flow: every hour from 01:00 to 05:00 (the service point's local time) of one of the
    last `nights` nights had consumption. Events are unique per meter, kind and time, so
    running this again creates nothing new.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO meters_meterevent (meter_id, service_point_id, account_id, kind, severity,
                                           occurred_at, data, created_at)
            SELECT m.id, mi.service_point_id, sup.account_id, 'communication_lost', %(warn)s,
                   m.last_contact_at + make_interval(hours => %(silent)s),
                   jsonb_build_object('last_contact', m.last_contact_at), now()
            FROM meters_meter m
            LEFT JOIN meters_meterinstallation mi ON mi.meter_id = m.id AND mi.removed_at IS NULL
            LEFT JOIN meters_supply sup ON sup.service_point_id = mi.service_point_id
                 AND sup.start <= %(now)s AND (sup."end" IS NULL OR sup."end" > %(now)s)
            WHERE m.last_contact_at < %(now)s - make_interval(hours => %(silent)s)
            ON CONFLICT DO NOTHING
            """,
            {"warn": int(MeterEvent.Severity.WARNING), "silent": silent_hours, "now": as_of},
        )
        lost = cursor.rowcount
        cursor.execute(
            """
            WITH nights AS (
                -- The last few nights, not only the last one: readings often arrive a day
                -- late, and an event already found is not made twice.
                SELECT sp.id AS sp,
                       ((%(now)s AT TIME ZONE sp.time_zone)::date - back
                        + time '01:00') AT TIME ZONE sp.time_zone AS night_start
                FROM meters_servicepoint sp, generate_series(0, %(nights)s - 1) AS back
                WHERE sp.kind IN ('water', 'gas')
            ), flow AS (
                SELECT n.sp, n.night_start, count(*) FILTER (WHERE h.consumption > 0) AS wet
                FROM nights n
                JOIN meters_rolluphourly h ON h.service_point_id = n.sp AND h.direction = 'import'
                 AND h.hour >= n.night_start AND h.hour < n.night_start + interval '4 hours'
                WHERE n.night_start + interval '4 hours' <= %(now)s
                GROUP BY n.sp, n.night_start
            )
            INSERT INTO meters_meterevent (meter_id, service_point_id, account_id, kind, severity,
                                           occurred_at, data, created_at)
            SELECT mi.meter_id, f.sp, sup.account_id, 'night_flow', %(serious)s,
                   f.night_start + interval '4 hours', '{"hours": 4}'::jsonb, now()
            FROM flow f
            JOIN meters_meterinstallation mi ON mi.service_point_id = f.sp
             AND mi.installed_at <= f.night_start
             AND (mi.removed_at IS NULL OR mi.removed_at > f.night_start)
            LEFT JOIN meters_supply sup ON sup.service_point_id = f.sp
             AND sup.start <= f.night_start AND (sup."end" IS NULL OR sup."end" > f.night_start)
            WHERE f.wet = 4
            ON CONFLICT DO NOTHING
            """,
            {"now": as_of, "serious": int(MeterEvent.Severity.SERIOUS), "nights": nights},
        )
        return int(lost + cursor.rowcount)


# --- Supplies and the fleet --------------------------------------------------------------


@transaction.atomic
def supply_start(
    *,
    account: Account,
    service_point: ServicePoint,
    start: dt.datetime,
    actor: Actor,
    end: dt.datetime | None = None,
) -> Supply:
    """Record a move-in (and optionally the move-out) of an account at a service point.

    :raises ValidationError: if it overlaps another supply there.
    """
    supply = Supply(account=account, service_point=service_point, start=start, end=end)
    supply.full_clean()
    supply.save()
    audit_record(
        actor=actor,
        event=AuditEvent.SUPPLY_STARTED,
        account=account,
        target=supply,
        data={"service_point": service_point.code, "start": start, "end": end},
    )
    _refresh_service_point(service_point.pk, start, end)
    return supply


@transaction.atomic
def supply_update(*, supply: Supply, changes: Mapping[str, Any], actor: Actor) -> Supply:
    """Change a supply's dates (a move-out); rollups are re-attributed for the changed span."""
    before = (supply.start, supply.end)
    diff = apply_changes(supply, changes, allowed={"start", "end"})
    if not diff:
        return supply
    supply.full_clean()
    supply.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.SUPPLY_UPDATED,
        account=supply.account,
        target=supply,
        data={"service_point": supply.service_point.code, "changes": diff},
    )
    starts = [t for t in (before[0], supply.start) if t is not None]
    ends = [t for t in (before[1], supply.end) if t is not None]
    _refresh_service_point(supply.service_point_id, min(starts), max(ends) if ends else None)
    return supply


def _refresh_service_point(sp_id: int, start: dt.datetime, end: dt.datetime | None) -> None:
    """Recompute a service point's rollups over a span (supply changes re-attribute them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE m_aff ON COMMIT DROP AS "
            "SELECT r.id AS register_id, %s::timestamptz AS lo, "
            "coalesce(%s::timestamptz, now() + interval '1 day') AS hi "
            "FROM meters_meterinstallation mi JOIN meters_register r ON r.meter_id = mi.meter_id "
            "WHERE mi.service_point_id = %s",
            [start, end, sp_id],
        )
    pipeline.refresh_rollups(dict(q.PARAMS))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS m_aff, m_sp, m_days")


@transaction.atomic
def fleet_save(
    *, instance: models.Model, actor: Actor, changes: Mapping[str, Any] | None = None
) -> models.Model:
    """Create (changes=None) or change a fleet object (service point, meter, register,
    installation) for staff in the admin; audited with the fields that changed."""
    label = instance._meta.verbose_name
    if changes is None:
        instance.full_clean()
        instance.save()
        audit_record(
            actor=actor,
            event=AuditEvent.FLEET_CREATED,
            target=instance,
            data={"model": str(label), "name": str(instance)},
        )
        return instance
    diff = apply_changes(
        instance,
        changes,
        allowed={f.name for f in instance._meta.concrete_fields},
        describe=lambda v: str(v) if isinstance(v, models.Model) else v,
    )
    if not diff:
        return instance
    instance.full_clean()
    instance.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.FLEET_UPDATED,
        target=instance,
        data={"model": str(label), "name": str(instance), "changes": diff},
    )
    if isinstance(instance, ServicePoint) and "time_zone" in diff:
        _rebuild_on_commit(instance.pk)
    return instance


def _rebuild_on_commit(service_point_id: int) -> None:
    """Queue the rebuild of a service point whose zone changed: its daily rollups are days of
    its zone (hourly ones are UTC hours and stay). A rebuild is idempotent, so a second zone
    change queueing a second rebuild is harmless."""
    from meters.tasks import rollups_rebuild_task

    transaction.on_commit(lambda: rollups_rebuild_task.delay(service_point_id=service_point_id))


# --- Live sources (ChirpStack HTTP, MQTT) ---------------------------------------------------


def inbound_store(
    *, source: str, messages: list[tuple[str, str, dict[str, Any]]], received_at: dt.datetime
) -> int:
    """Keep live messages (event, dedup key, payload) until the flush batches them; return how
    many were new.

    A message seen before (same event and dedup key: ChirpStack's deduplicationId) is
    dropped, so redeliveries are harmless. The event is part of the key because ChirpStack
    gives a status event the deduplicationId of the uplink it came with. Not audited one by
    one: the batch that imports them is.
    """
    import json

    if not messages:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO meters_inboundmessage (source, event, dedup_key, payload, received_at) "
            "SELECT %s, e, k, p::jsonb, %s FROM unnest(%s::text[], %s::text[], %s::text[]) "
            "AS t(e, k, p) ON CONFLICT (dedup_key) DO NOTHING",
            [
                source,
                received_at,
                [event for event, _key, _payload in messages],
                [f"{event}:{key}"[:200] for event, key, _payload in messages],
                [json.dumps(payload) for _event, _key, payload in messages],
            ],
        )
        return max(int(cursor.rowcount), 0)


def inbound_flush(*, actor: Actor, as_of: dt.datetime, limit: int = 50_000) -> int:
    """Gather waiting live messages into one import batch per source; return messages taken."""
    import io
    import json

    from meters.models import InboundMessage

    taken = 0
    for source in (ImportBatch.Source.CHIRPSTACK, ImportBatch.Source.MQTT):
        with transaction.atomic():
            messages = list(
                InboundMessage.objects.select_for_update(skip_locked=True)
                .filter(batch__isnull=True, source=source)
                .order_by("received_at", "pk")[:limit]
            )
            if not messages:
                continue
            lines = "".join(
                json.dumps(
                    {
                        "event": m.event,
                        "payload": m.payload,
                        "received_at": m.received_at.isoformat(),
                    },
                    separators=(",", ":"),
                )
                + "\n"
                for m in messages
            ).encode("utf-8")
            batch = batch_create(
                source=source,
                fmt=ImportBatch.Format.CHIRPSTACK,
                content=io.BytesIO(lines),
                original_name=f"{source}-{as_of:%Y%m%dT%H%M%S}.ndjson",
                actor=actor,
                as_of=as_of,
            )
            InboundMessage.objects.filter(pk__in=[m.pk for m in messages]).update(batch=batch)
            taken += len(messages)
    return taken


def inbound_purge(*, before: dt.datetime) -> int:
    """Forget live messages that were imported before `before`; return how many.

    Their batch keeps the payload; a message is kept a while after it is batched only so that
    a late redelivery of it is still recognised as a duplicate.
    """
    from meters.models import InboundMessage

    deleted, _by_model = InboundMessage.objects.filter(
        batch__isnull=False, received_at__lt=before
    ).delete()
    return deleted


# --- Rollups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RollupRebuildStep:
    """Where a rebuild is, reported after each of its transactions."""

    first: int  # 1-based position of the group's first service point
    last: int
    total: int  # service points in the rebuild
    month: dt.datetime  # the UTC month just rebuilt
    step: int
    steps: int  # months of this group


@dataclass
class RollupRebuildResult:
    service_points: int = 0
    transactions: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    stale_days: int = 0


# The span a service point's rebuild covers: the given local days, else everything its
# readings and its present rollups reach (so that rows of an earlier zone's days are covered).
_REBUILD_SPANS = """
WITH sp AS (SELECT id, time_zone FROM meters_servicepoint WHERE id = ANY(%(ids)s)),
regs AS (
    SELECT DISTINCT mi.service_point_id AS sp, r.id AS reg
    FROM meters_meterinstallation mi JOIN meters_register r ON r.meter_id = mi.meter_id
    WHERE mi.service_point_id = ANY(%(ids)s)
),
reach AS (
    SELECT g.sp, min(f.lo) AS lo, max(l.hi) AS hi
    FROM regs g
    CROSS JOIN LATERAL (SELECT coalesce(e.start_ts, e.ts) AS lo FROM meters_reading e
                        WHERE e.register_id = g.reg ORDER BY e.ts LIMIT 1) f
    CROSS JOIN LATERAL (SELECT e.ts AS hi FROM meters_reading e
                        WHERE e.register_id = g.reg ORDER BY e.ts DESC LIMIT 1) l
    GROUP BY g.sp
    UNION ALL
    SELECT service_point_id, min(hour), max(hour) + interval '1 hour'
    FROM meters_rolluphourly WHERE service_point_id = ANY(%(ids)s) GROUP BY service_point_id
    UNION ALL
    SELECT d.service_point_id, min(d.day)::timestamp AT TIME ZONE sp.time_zone,
           (max(d.day) + 1)::timestamp AT TIME ZONE sp.time_zone
    FROM meters_rollupdaily d JOIN sp ON sp.id = d.service_point_id
    GROUP BY d.service_point_id, sp.time_zone
)
SELECT sp.id,
       coalesce(%(first)s::date::timestamp AT TIME ZONE sp.time_zone, min(reach.lo)),
       coalesce((%(last)s::date + 1)::timestamp AT TIME ZONE sp.time_zone, max(reach.hi))
FROM sp LEFT JOIN reach ON reach.sp = sp.id
GROUP BY sp.id, sp.time_zone
ORDER BY sp.id
"""

# A month of a group: the registers installed at its service points, over the part of each
# span inside the month, as the pipeline's m_aff, so the pipeline's rollup SQL does the work.
_REBUILD_AFFECTED = """
CREATE TEMP TABLE m_aff ON COMMIT DROP AS
SELECT DISTINCT r.id AS register_id, greatest(s.lo, %(w_lo)s) AS lo, least(s.hi, %(w_hi)s) AS hi
FROM unnest(%(ids)s::bigint[], %(los)s::timestamptz[], %(his)s::timestamptz[]) AS s(sp, lo, hi)
JOIN meters_meterinstallation mi ON mi.service_point_id = s.sp
JOIN meters_register r ON r.meter_id = mi.meter_id
WHERE s.lo < %(w_hi)s AND s.hi > %(w_lo)s;
ANALYZE m_aff;
"""

# Daily rows no hourly row stands behind in the service point's zone: days of a zone it had
# before (a day that does have hours was recomputed with the rest of the span).
_REBUILD_STALE_DAYS = """
DELETE FROM meters_rollupdaily d
USING unnest(%(ids)s::bigint[], %(los)s::timestamptz[], %(his)s::timestamptz[]) AS s(sp, lo, hi),
      meters_servicepoint sp
WHERE sp.id = s.sp AND d.service_point_id = s.sp
  AND d.day BETWEEN (s.lo AT TIME ZONE sp.time_zone)::date - 1
                AND (s.hi AT TIME ZONE sp.time_zone)::date + 1
  AND NOT EXISTS (
      SELECT 1 FROM meters_rolluphourly h
      WHERE h.service_point_id = d.service_point_id AND h.direction = d.direction
        AND h.hour >= d.day::timestamp AT TIME ZONE sp.time_zone
        AND h.hour < (d.day + 1)::timestamp AT TIME ZONE sp.time_zone)
"""


def _months(lo: dt.datetime, hi: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The UTC calendar months [start, end) that [lo, hi) touches."""
    start = lo.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    while start < hi:
        end = (start + dt.timedelta(days=32)).replace(day=1)
        months.append((start, end))
        start = end
    return months


def rollups_rebuild(
    *,
    actor: Actor,
    service_point_ids: Sequence[int] | None = None,
    first_day: dt.date | None = None,
    last_day: dt.date | None = None,
    group_size: int = 50,
    progress: Callable[[RollupRebuildStep], None] | None = None,
) -> RollupRebuildResult:
    """Recompute the hourly and daily rollups of service points (all without ids) over the
    local days first_day..last_day (inclusive; open ends: all their data), idempotently.

    One transaction per UTC month per group of `group_size` service points, each taking the
    imports' register and service-point locks, so a rebuild never holds a year of rows in
    one transaction and waits for, rather than races, an import of the same meters. The
    computation is the pipeline's own (meters.ingest.sql via m_aff). Audited once, in the
    last transaction.
    """
    if service_point_ids is None:
        ids = list(ServicePoint.objects.order_by("pk").values_list("pk", flat=True))
    else:
        ids = sorted(set(service_point_ids))
    result = RollupRebuildResult()
    groups = [ids[i : i + group_size] for i in range(0, len(ids), group_size)] or [[]]
    for number, group in enumerate(groups):
        with connection.cursor() as cursor:
            cursor.execute(_REBUILD_SPANS, {"ids": group, "first": first_day, "last": last_day})
            spans = [(sp, lo, hi) for sp, lo, hi in cursor.fetchall() if lo and hi and lo < hi]
        params = {
            "ids": [sp for sp, _lo, _hi in spans],
            "los": [lo for _sp, lo, _hi in spans],
            "his": [hi for _sp, _lo, hi in spans],
        }
        months = _months(min(params["los"]), max(params["his"])) if spans else []
        for step, (w_lo, w_hi) in enumerate(months, start=1):
            with transaction.atomic():
                _rebuild_month(params, w_lo, w_hi)
            result.transactions += 1
            if progress is not None:
                position = number * group_size
                progress(
                    RollupRebuildStep(
                        first=position + 1,
                        last=position + len(group),
                        total=len(ids),
                        month=w_lo,
                        step=step,
                        steps=len(months),
                    )
                )
        result.service_points += len(spans)
        if spans:
            lo, hi = min(params["los"]), max(params["his"])
            result.first = min(lo, result.first) if result.first else lo
            result.last = max(hi, result.last) if result.last else hi
        with transaction.atomic():
            if spans:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s + sp) FROM unnest(%s::bigint[]) sp "
                        "ORDER BY sp",
                        [q.SERVICE_POINT_LOCK, params["ids"]],
                    )
                    cursor.execute(_REBUILD_STALE_DAYS, params)
                    result.stale_days += max(cursor.rowcount, 0)
            result.transactions += 1
            if number == len(groups) - 1:
                _audit_rebuild(ids, result, first_day, last_day, actor=actor)
    return result


def _rebuild_month(params: dict[str, Any], w_lo: dt.datetime, w_hi: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_REBUILD_AFFECTED, {**params, "w_lo": w_lo, "w_hi": w_hi})
        cursor.execute("SELECT DISTINCT register_id FROM m_aff ORDER BY register_id")
        registers = [register for (register,) in cursor.fetchall()]
        # The imports' order: registers, then (in ROLLUP_RANGES) service points.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s + r) FROM unnest(%s::bigint[]) r ORDER BY r",
            [q.REGISTER_LOCK, registers],
        )
    pipeline.refresh_rollups(dict(q.PARAMS))
    with connection.cursor() as cursor:
        # ON COMMIT DROP is not enough inside a caller's transaction (tests, one-off scripts).
        cursor.execute("DROP TABLE IF EXISTS m_aff, m_sp, m_days")


def _audit_rebuild(
    ids: list[int],
    result: RollupRebuildResult,
    first_day: dt.date | None,
    last_day: dt.date | None,
    *,
    actor: Actor,
) -> None:
    codes = list(
        ServicePoint.objects.filter(pk__in=ids[:20]).order_by("pk").values_list("code", flat=True)
    )
    listed = ", ".join(codes) + (f" (+{len(ids) - len(codes)})" if len(ids) > len(codes) else "")
    target = ServicePoint.objects.get(pk=ids[0]) if len(ids) == 1 else None
    audit_record(
        actor=actor,
        event=AuditEvent.ROLLUPS_REBUILT,
        target=target,
        data={
            "service_points": listed,
            "count": result.service_points,
            "first": first_day or (result.first.date() if result.first else None),
            "last": last_day
            or ((result.last - dt.timedelta(microseconds=1)).date() if result.last else None),
            "transactions": result.transactions,
            "stale_days": result.stale_days,
        },
    )
