"""manage.py seed_demo: load the demo organisations, households, logins, meters and a year of
readings (idempotent: a second run finds everything in place and changes nothing)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from portal.audit.actors import SystemActor
from web.demo import DEMO_DAYS, demo_seed

# The stages of the seeding (web.demo) and each import batch (the simulator's loader).
PROGRESS_LOGGERS = ("web.demo", "meters.simulator.load")


class _Progress(logging.Handler):
    """Write each progress line to the command's output at once, with the seconds so far."""

    def __init__(self, out: OutputWrapper) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.began = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.write(
                f"[seed_demo {time.monotonic() - self.began:3.0f} s] {record.getMessage()}"
            )
            # Flushed line by line: under `make run` the output is often a pipe or a file.
            self.out.flush()
        except Exception:  # noqa: BLE001 - logging's own rule: report, never raise
            self.handleError(record)


@contextlib.contextmanager
def _progress_to(out: OutputWrapper) -> Iterator[None]:
    """Route the demo's progress loggers to `out` alone (not to the console log) meanwhile."""
    handler = _Progress(out)
    saved = []
    for name in PROGRESS_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


class Command(BaseCommand):
    help = (
        "Create the demo group, subsidiaries, households, logins and readings; safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=DEMO_DAYS,
            help=f"days of 15-minute readings up to now (default {DEMO_DAYS})",
        )
        parser.add_argument(
            "--no-readings", action="store_true", help="skip the meters and readings"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] < 1:
            raise CommandError("--days must be at least 1")
        with _progress_to(self.stdout):
            result = demo_seed(
                actor=SystemActor("command:seed_demo"),
                days=options["days"],
                readings=not options["no_readings"],
            )
        self.stdout.write(f"Demo data: {result.created} objects created.")
        readings = result.readings
        if readings is not None and readings.up_to_date:
            self.stdout.write(f"Readings: {readings.meters} meters, already up to date.")
        elif readings is not None:
            self.stdout.write(
                f"Readings: {readings.meters} meters from {readings.start:%Y-%m-%d} to now, "
                f"{readings.rows:,} rows in {readings.files} files: {readings.inserted:,} "
                f"readings stored (generated in {readings.generate_seconds:.1f} s, imported in "
                f"{readings.import_seconds:.1f} s)."
            )
            if readings.failed:
                self.stderr.write(f"{readings.failed} import batch(es) failed.")
        billing = result.billing
        if billing is not None:
            self.stdout.write(
                f"Billing: {billing.tariffs} tariffs; {billing.topups} top-ups, "
                f"{billing.charges} daily charges, {billing.bills} bills and "
                f"{billing.warnings} shortage warnings added."
            )
        width = max(len(email) for email, _, _ in result.logins)
        self.stdout.write("Logins (all with the same demo password):")
        for email, password, what in result.logins:
            self.stdout.write(f"  {email.ljust(width)}  {password}  {what}")
