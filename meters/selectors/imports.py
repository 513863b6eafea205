"""Reads of import batches: lookups, row errors, the sweeper's queue and duplicates."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce

from meters.models import (
    ImportBatch,
    ImportRowError,
)


def batch_get_by_id(*, batch_id: int) -> ImportBatch | None:
    """Return a batch by primary key (for tasks)."""
    return ImportBatch.objects.filter(pk=batch_id).first()


def batch_for_organisations(
    *, public_id: uuid.UUID, organisation_ids: list[int]
) -> ImportBatch | None:
    """Return a batch sent by one of these organisations, by its public id."""
    return ImportBatch.objects.filter(
        public_id=public_id, organisation_id__in=organisation_ids
    ).first()


def batches_for_organisations(*, organisation_ids: list[int]) -> QuerySet[ImportBatch]:
    return ImportBatch.objects.filter(organisation_id__in=organisation_ids).order_by("-created_at")


def batch_row_errors(*, batch: ImportBatch, limit: int = 100) -> list[ImportRowError]:
    return list(batch.row_errors.order_by("line", "pk")[:limit])


def batches_needing_a_worker(*, queued_before: dt.datetime, as_of: dt.datetime) -> list[int]:
    """Return the batches that should be running but may have lost their worker, and those
    whose wait for their next attempt is over; the longest waiting first."""
    return list(
        ImportBatch.objects.filter(
            Q(status=ImportBatch.Status.RUNNING)
            | Q(
                status=ImportBatch.Status.QUEUED,
                next_attempt_at__isnull=True,
                created_at__lt=queued_before,
            )
            | Q(status=ImportBatch.Status.QUEUED, next_attempt_at__lte=as_of)
        )
        .order_by(Coalesce("next_attempt_at", "created_at"))
        .values_list("id", flat=True)[:100]
    )


def find_previous_batch(
    *,
    sha256: str,
    fmt: str,
    organisation_id: int | None,
    register_meters: bool,
    read_at: dt.datetime | None,
    meter_serial: str = "",
    dsmr_spec: str = "",
) -> ImportBatch | None:
    """Return an earlier batch of the same content, sent with the same options, that ended
    (done, with or without rejections, or rejected) or is still going. A failed batch is
    not one: its content is imported again.

    The sender and options are part of the identity: the same file from another organisation
    (whose meters the first batch refused) or sent again to register unknown meters must be
    imported, not skipped as a duplicate.
    """
    return (
        ImportBatch.objects.filter(
            Q(organisation_id=organisation_id)
            if organisation_id is not None
            else Q(organisation__isnull=True),
            sha256=sha256,
            format=fmt,
            register_meters=register_meters,
            read_at=read_at,
            meter_serial=meter_serial,
            dsmr_spec=dsmr_spec,
            status__in=[
                ImportBatch.Status.DONE,
                ImportBatch.Status.DONE_WITH_REJECTIONS,
                ImportBatch.Status.REJECTED,
                ImportBatch.Status.RUNNING,
                ImportBatch.Status.QUEUED,
            ],
            duplicate_of__isnull=True,
        )
        .order_by("created_at")
        .first()
    )
