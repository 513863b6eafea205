"""manage.py rebuild_rollups [--service-point CODE_OR_ID] [--from DAY] [--to DAY]: recompute
the hourly and daily rollups from the readings.

For a service point whose zone changed (the admin queues this by itself), after a repair
done in SQL, or to check the rollups (run it twice: nothing changes). Days are local days of
each service point; without --from/--to everything its readings and rollups reach. One
transaction per month per 50 service points, with a progress line for each.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from meters.selectors.fleet import service_point_find
from meters.services import readings as reading_services
from portal.audit.actors import SystemActor


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a day such as 2026-03-01") from None


class Command(BaseCommand):
    help = "Recompute the hourly and daily rollups (all service points, or one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--service-point", help="code or id (default: every one)")
        parser.add_argument("--from", dest="first", help="first local day, e.g. 2026-01-01")
        parser.add_argument("--to", dest="last", help="last local day (included)")
        parser.add_argument("--group-size", type=int, default=50, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        first = _day(options["first"]) if options["first"] else None
        last = _day(options["last"]) if options["last"] else None
        if first and last and first > last:
            raise CommandError("--from is after --to")
        ids = None
        if options["service_point"]:
            found = service_point_find(code_or_id=options["service_point"])
            if found is None:
                raise CommandError(f"no service point {options['service_point']!r}")
            ids = [found.pk]

        def report(step: reading_services.RollupRebuildStep) -> None:
            self.stdout.write(
                f"service points {step.first}-{step.last} of {step.total}: "
                f"{step.month:%Y-%m} ({step.step}/{step.steps})"
            )

        result = reading_services.rollups_rebuild(
            service_point_ids=ids,
            first_day=first,
            last_day=last,
            group_size=max(1, options["group_size"]),
            progress=report,
            actor=SystemActor("command:rebuild_rollups"),
        )
        self.stdout.write(
            f"rebuilt {result.service_points} service points in {result.transactions} "
            f"transactions; {result.stale_days} daily rows of former zones removed"
        )
