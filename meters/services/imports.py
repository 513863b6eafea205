"""Import batches: store the payload, create the batch and queue it.

The batch then runs through meters.ingest.pipeline.run, which owns its stages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.db import transaction

from meters.exceptions import MeterError
from meters.ingest import pipeline
from meters.ingest.formats import dsmr
from meters.models import (
    ImportBatch,
)
from meters.selectors.imports import find_previous_batch
from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.timezones import available_time_zones
from portal.tenancy.models import Organisation


class Readable(Protocol):
    """What a payload is read from: a file, an upload, a request body."""

    def read(self, size: int = ..., /) -> bytes: ...


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
    if fmt not in pipeline.PARSERS:
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
