"""manage.py import_readings PATH: create an import batch from a file.

With --wait the command waits for the worker and prints the batch's final counts as one JSON
line; with --inline it runs the batch itself (no worker needed). The exit status is 1 if the
batch failed.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meters import services
from meters.ingest.formats import format_for_name
from meters.ingest.formats.dsmr import SPEC_CHOICES
from meters.models import ImportBatch
from meters.selectors import batch_get_by_id
from portal.audit.actors import SystemActor

FINAL = {ImportBatch.Status.DONE, ImportBatch.Status.FAILED, ImportBatch.Status.DUPLICATE}


class Command(BaseCommand):
    help = "Import meter readings from a file (CSV, DSMR, Green Button ESPI, ChirpStack, JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--format", choices=[f.value for f in ImportBatch.Format])
        parser.add_argument("--wait", action="store_true", help="wait and print the counts")
        parser.add_argument("--inline", action="store_true", help="run here, without a worker")
        parser.add_argument("--timeout", type=float, default=3600.0)
        parser.add_argument(
            "--register-meters",
            action="store_true",
            help="register unknown meters on new service points (staff only)",
        )
        parser.add_argument("--read-at", help="read time for telegrams without one (ISO 8601)")
        parser.add_argument(
            "--reprocess", action="store_true", help="import even if the content was seen before"
        )
        parser.add_argument(
            "--meter",
            default="",
            help="serial of the meter that sent telegrams without an equipment identifier",
        )
        parser.add_argument(
            "--dsmr-spec",
            default="",
            choices=SPEC_CHOICES,
            help="read every telegram with this dsmr-parser specification (default: detect)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        fmt = options["format"] or format_for_name(path.name)
        if fmt is None:
            raise CommandError("cannot tell the format from the name: give --format")
        read_at = None
        if options["read_at"]:
            read_at = dt.datetime.fromisoformat(options["read_at"])
            if read_at.tzinfo is None:
                raise CommandError("--read-at needs an offset, e.g. 2026-03-01T12:00:00+01:00")
        actor = SystemActor("command:import_readings")
        with path.open("rb") as content:
            batch = services.batch_create(
                source=ImportBatch.Source.COMMAND,
                fmt=fmt,
                content=content,
                original_name=path.name,
                actor=actor,
                register_meters=options["register_meters"],
                read_at=read_at,
                reprocess=options["reprocess"],
                as_of=timezone.now(),
                meter_serial=options["meter"].strip(),
                dsmr_spec=options["dsmr_spec"],
            )
        if options["inline"] and batch.status == ImportBatch.Status.QUEUED:
            services.batch_process(batch_id=batch.pk, actor=actor, as_of=timezone.now())
        if options["wait"] or options["inline"]:
            batch = self._wait(batch.pk, options["timeout"])
            self.stdout.write(json.dumps(_summary(batch)))
            if batch.status == ImportBatch.Status.FAILED:
                raise CommandError(f"batch {batch.public_id} failed: {batch.error}")
        else:
            self.stdout.write(json.dumps({"batch": str(batch.public_id), "status": batch.status}))

    def _wait(self, batch_id: int, timeout: float) -> ImportBatch:
        deadline = time.monotonic() + timeout
        while True:
            batch = batch_get_by_id(batch_id=batch_id)
            if batch is None:
                raise CommandError("the batch disappeared")
            if batch.status in FINAL:
                return batch
            if time.monotonic() > deadline:
                raise CommandError(f"batch still {batch.status} after {timeout:.0f}s")
            time.sleep(0.2)


def _summary(batch: ImportBatch) -> dict[str, object]:
    source = batch
    if batch.status == ImportBatch.Status.DUPLICATE and batch.duplicate_of is not None:
        source = batch.duplicate_of
    return {
        "batch": str(batch.public_id),
        "status": batch.status,
        "duplicate_of": str(batch.duplicate_of.public_id) if batch.duplicate_of else None,
        "seen": source.seen if batch.status != ImportBatch.Status.DUPLICATE else 0,
        "inserted": batch.inserted,
        "duplicate": batch.duplicate
        if batch.status != ImportBatch.Status.DUPLICATE
        else source.seen,
        "conflicting": batch.conflicting,
        "rejected": batch.rejected,
        "estimated": batch.estimated,
        "error": batch.error or None,
    }
