"""manage.py simulate_fleet: write a simulated fleet's readings, with an answer key; --import
loads them through the real pipeline and compares the counts with what the key expects."""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meters.simulator import FORMATS, fleet_random, fleet_summary, simulate
from meters.simulator.load import delivery, files_import, fleet_apply
from portal.audit.actors import SystemActor
from portal.lib.periods import local_midnight


class Command(BaseCommand):
    help = (
        "Simulate a fleet of meters: 15-minute readings in CSV, DSMR, ESPI, ChirpStack and JSON "
        "with injected anomalies and an answer key (answer_key.json); --import loads them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--meters", type=int, default=50, help="number of meters")
        parser.add_argument("--days", type=int, default=14, help="days of readings")
        parser.add_argument(
            "--start", help="first day (YYYY-MM-DD, local midnight); default: --days ago"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--out", type=Path, help="output folder (default .local/simulation/seed-S)"
        )
        parser.add_argument(
            "--formats",
            default=",".join(FORMATS),
            help=f"comma-separated, from {','.join(FORMATS)}",
        )
        parser.add_argument("--time-zone", default="Europe/Amsterdam")
        parser.add_argument("--climate", choices=["temperate", "subtropical"], default="temperate")
        parser.add_argument("--window-days", type=int, default=7, help="days per delivered file")
        parser.add_argument(
            "--anomaly-rate",
            type=float,
            default=1.0,
            help="anomalies per meter and 30 days (0: clean data)",
        )
        parser.add_argument("--prefix", help="meter serial prefix (default S<seed>)")
        parser.add_argument(
            "--in-order", action="store_true", help="deliver the files in time order"
        )
        parser.add_argument(
            "--import",
            dest="do_import",
            action="store_true",
            help="create the fleet and import the files through the pipeline",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        formats = tuple(f.strip() for f in options["formats"].split(",") if f.strip())
        if unknown := set(formats) - set(FORMATS):
            raise CommandError(f"unknown formats: {', '.join(sorted(unknown))}")
        if options["meters"] < 1 or options["days"] < 1:
            raise CommandError("--meters and --days must be at least 1")
        try:
            tz = zoneinfo.ZoneInfo(options["time_zone"])
        except zoneinfo.ZoneInfoNotFoundError:
            raise CommandError(f"unknown time zone {options['time_zone']}") from None
        now = timezone.now()
        if options["start"]:
            day = dt.date.fromisoformat(options["start"])
        else:
            day = now.astimezone(tz).date() - dt.timedelta(days=options["days"])
        start = local_midnight(day, tz)
        seed = options["seed"]
        out: Path = (
            options["out"] or Path(settings.BASE_DIR) / ".local" / "simulation" / f"seed-{seed}"
        )
        fleet = fleet_random(
            meters=options["meters"],
            seed=seed,
            formats=formats,
            prefix=options["prefix"],
            time_zone=options["time_zone"],
            climate=options["climate"],
        )
        result = simulate(
            fleet=fleet,
            start=start,
            days=options["days"],
            out_dir=out,
            seed=seed,
            window_days=options["window_days"],
            anomaly_rate=options["anomaly_rate"],
            shuffle=not options["in_order"],
        )
        key = json.loads((out / "answer_key.json").read_text())
        kinds = Counter(a["kind"] for a in key["planned"])
        self.stdout.write(
            f"Simulated {options['meters']} meters x {options['days']} days from {start:%Y-%m-%d}"
            f" into {out}: {result.files} files, {result.rows} rows, {result.readings} readings"
            f" expected, in {result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s)."
        )
        self.stdout.write(
            "Meters: " + ", ".join(f"{k} {n}" for k, n in fleet_summary(fleet).items())
        )
        self.stdout.write(
            f"Anomalies: {result.anomalies} ("
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            + "); the answer key is answer_key.json."
        )
        if options["do_import"]:
            self._import(
                out,
                key["expected"],
                received=max(now, start + dt.timedelta(days=options["days"], hours=1)),
                in_order=options["in_order"],
            )

    def _import(
        self, out: Path, expected: dict[str, int], *, received: dt.datetime, in_order: bool
    ) -> None:
        actor = SystemActor("command:simulate_fleet")
        began = time.monotonic()
        try:
            created = fleet_apply(fleet=json.loads((out / "fleet.json").read_text()), actor=actor)
        except ValidationError as error:
            raise CommandError(
                f"the fleet clashes with one already in the database ({error}); "
                "use another --seed or --prefix"
            ) from None
        self.stdout.write(
            f"Fleet: {created} objects created in {time.monotonic() - began:.1f} s "
            "(service points, meters, registers, installations)."
        )
        began = time.monotonic()
        summary = files_import(
            out_dir=out,
            entries=delivery(out_dir=out, in_order=in_order),
            actor=actor,
            as_of=received,
        )
        seconds = time.monotonic() - began
        self.stdout.write(
            f"Imported {summary.batches} batches in {seconds:.1f} s "
            f"({summary.seen / seconds if seconds else 0:,.0f} rows/s): "
            f"{summary.done} done, {summary.failed} failed, "
            f"{summary.duplicate_batches} duplicate (expected {expected['duplicate_batches']})."
        )
        for label, got, want in (
            ("seen", summary.seen, expected["rows_written"]),
            ("inserted", summary.inserted, expected["readings"]),
            ("duplicate", summary.duplicate, expected["duplicates"]),
            ("conflicting", summary.conflicting, expected["conflicts"]),
            ("estimated", summary.estimated, expected["estimated"]),
            ("rejected", summary.rejected, 0),
        ):
            self.stdout.write(f"  {label:12s} {got:>10,}   expected {want:>10,}")
        for message in summary.errors:
            self.stderr.write(f"  {message}")
        if summary.failed:
            raise CommandError(f"{summary.failed} batch(es) failed")
