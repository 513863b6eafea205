"""Intake of readings that arrive on their own: the inbox folder and live messages
(ChirpStack HTTP, MQTT) stored, flushed into imports and purged."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from meters.models import (
    ImportBatch,
)
from meters.services.imports import batch_create
from portal.audit.actors import Actor

logger = logging.getLogger(__name__)


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
