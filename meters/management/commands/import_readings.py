"""manage.py import_readings PATH: create an import batch from a file.

With --wait the command waits for the worker and prints the batch's final counts as one JSON
line; with --inline it runs the batch itself (no worker needed), through the same bounded
attempts as a worker, without waiting between them. The exit status tells how the batch ended
(EXIT_CODES; README, "Import outcomes"); it never ends in a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meters.exceptions import MeterError
from meters.ingest import pipeline
from meters.ingest.formats import format_for_name
from meters.ingest.formats.dsmr import SPEC_CHOICES
from meters.models import ImportBatch
from meters.selectors.imports import batch_get_by_id
from meters.services import imports as import_services
from portal.audit.actors import SystemActor

# The exit status of --wait and --inline for each final state; a duplicate exits as the batch
# it repeats.
EXIT_CODES = {
    ImportBatch.Status.DONE: 0,
    ImportBatch.Status.DONE_WITH_REJECTIONS: 3,
    ImportBatch.Status.REJECTED: 4,
    ImportBatch.Status.FAILED: 1,
}
EXIT_USAGE = 2
EXIT_TIMEOUT = 5

HELP = (
    "Import meter readings from a file (CSV, DSMR, Green Button ESPI, ChirpStack, JSON). "
    "Exit status with --wait or --inline: 0 done (every row accepted: inserted, already "
    "stored or conflicting), 3 done_with_rejections (some rows rejected), 4 rejected (every "
    "row rejected, or no data rows), 1 failed (a file-level error, or an unexpected error in "
    "every attempt), 2 usage error, 5 not finished when --timeout ran out. A duplicate (the "
    "same content sent before) exits as the batch it repeats."
)


class Command(BaseCommand):
    help = HELP

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
        parser.add_argument(
            "--time-zone",
            default="",
            help="IANA zone of the service points it registers when the file states none "
            "(default: the organisation's, else the site's)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file", returncode=EXIT_USAGE)
        fmt = options["format"] or format_for_name(path.name)
        if fmt is None:
            raise CommandError(
                "cannot tell the format from the name: give --format", returncode=EXIT_USAGE
            )
        read_at = None
        if options["read_at"]:
            try:
                read_at = dt.datetime.fromisoformat(options["read_at"])
            except ValueError:
                raise CommandError(
                    "--read-at is not an ISO 8601 time", returncode=EXIT_USAGE
                ) from None
            if read_at.tzinfo is None:
                raise CommandError(
                    "--read-at needs an offset, e.g. 2026-03-01T12:00:00+01:00",
                    returncode=EXIT_USAGE,
                )
        actor = SystemActor("command:import_readings")
        try:
            with path.open("rb") as content:
                batch = import_services.batch_create(
                    source=ImportBatch.Source.COMMAND,
                    fmt=fmt,
                    content=content,
                    original_name=path.name,
                    actor=actor,
                    register_meters=options["register_meters"],
                    read_at=read_at,
                    reprocess=options["reprocess"],
                    time_zone=options["time_zone"],
                    as_of=timezone.now(),
                    meter_serial=options["meter"].strip(),
                    dsmr_spec=options["dsmr_spec"],
                )
        except MeterError as error:
            raise CommandError(str(error.message), returncode=EXIT_USAGE) from None
        if not (options["wait"] or options["inline"]):
            self.stdout.write(json.dumps({"batch": str(batch.public_id), "status": batch.status}))
            return
        # A duplicate ends as the batch it repeats: that one is run or waited for.
        target = batch.duplicate_of or batch
        if options["inline"]:
            with _tracebacks_logged(options["verbosity"] >= 2 or options["traceback"]):
                self._run_inline(target.pk, actor=actor)
        self._wait(target.pk, options["timeout"], batch_id=batch.pk)
        batch = batch_get_by_id(batch_id=batch.pk) or batch
        self.stdout.write(json.dumps(_summary(batch)))
        final = batch.duplicate_of or batch
        code = EXIT_CODES.get(ImportBatch.Status(final.status), 0)
        if final.status == ImportBatch.Status.FAILED:
            self.stderr.write(f"batch {final.public_id} failed: {final.error}")
        if code:
            raise SystemExit(code)

    def _run_inline(self, batch_id: int, *, actor: SystemActor) -> None:
        """Run the batch here through its attempts, back to back; stop early if a worker
        holds it (then the command waits for that worker)."""
        for _ in range(settings.PORTAL_IMPORT_MAX_ATTEMPTS + 1):
            try:
                batch = pipeline.run(batch_id=batch_id, actor=actor, as_of=timezone.now())
            except Exception as error:  # noqa: BLE001 - the batch is left for the sweeper
                self.stderr.write(
                    f"the batch could not be run or its error recorded: {type(error).__name__}: "
                    f"{error}; the sweeper will try it again"
                )
                raise SystemExit(EXIT_CODES[ImportBatch.Status.FAILED]) from None
            if batch is None or batch.finished:
                return

    def _wait(self, target_id: int, timeout: float, *, batch_id: int) -> None:
        deadline = time.monotonic() + timeout
        while True:
            target = batch_get_by_id(batch_id=target_id)
            if target is None:
                raise CommandError("the batch disappeared")
            if target.finished:
                return
            if time.monotonic() > deadline:
                batch = batch_get_by_id(batch_id=batch_id) or target
                self.stdout.write(json.dumps(_summary(batch)))
                self.stderr.write(f"batch still {target.status} after {timeout:.0f}s")
                raise SystemExit(EXIT_TIMEOUT)
            time.sleep(0.2)


class _WithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


@contextmanager
def _tracebacks_logged(shown: bool) -> Iterator[None]:
    """A failed attempt is logged in one line here (the summary says the rest); a worker's log
    keeps the traceback, and so does this command with -v 2 or --traceback."""
    if shown:
        yield
        return
    services_logger = logging.getLogger(pipeline.__name__)
    quiet = _WithoutTraceback()
    services_logger.addFilter(quiet)
    try:
        yield
    finally:
        services_logger.removeFilter(quiet)


def _summary(batch: ImportBatch) -> dict[str, object]:
    """The batch's counts; for a duplicate, how the batch it repeats ended ("outcome")."""
    repeated = batch.status == ImportBatch.Status.DUPLICATE
    source = batch.duplicate_of if repeated and batch.duplicate_of is not None else batch
    return {
        "batch": str(batch.public_id),
        "status": batch.status,
        "outcome": source.status,
        "duplicate_of": str(batch.duplicate_of.public_id) if batch.duplicate_of else None,
        "seen": source.seen if not repeated else 0,
        "inserted": batch.inserted,
        "duplicate": batch.duplicate if not repeated else source.seen,
        "conflicting": batch.conflicting,
        "rejected": batch.rejected,
        "estimated": batch.estimated,
        "attempts": source.attempts,
        "error": source.error or None,
        "error_class": source.error_class or None,
    }
