"""manage.py seed_demo: load the demo organisations, households, logins, meters and a year of
readings (idempotent: a second run finds everything in place and changes nothing)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit.actors import SystemActor
from portal.web.demo import DEMO_DAYS, demo_seed


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
