"""manage.py convert_readings [--chunk-rows N]: move readings stored one row each into the day
rows of their registers (issue 14).

Readings stored before the day layout, and those of registers given an interval later, stay
readable where they are; this moves every one that belongs in a day row, one transaction per
chunk with a progress line each. Stop it at any time and run it again: it carries on from what
is left, and a second run moves nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from meters.services import storage
from portal.audit.actors import SystemActor


class Command(BaseCommand):
    help = "Move readings stored one row each into their registers' day rows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows a transaction")
        parser.add_argument("--max-chunks", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        def report(step: storage.ConvertStep) -> None:
            self.stdout.write(
                f"{step.readings} readings of {step.registers} registers moved "
                f"(up to register {step.last_register})"
            )

        result = storage.readings_convert(
            actor=SystemActor("command:convert_readings"),
            chunk_rows=max(1, options["chunk_rows"]),
            max_chunks=options["max_chunks"],
            progress=report,
        )
        self.stdout.write(
            f"moved {result.readings} readings of {result.registers} registers "
            f"in {result.transactions} transactions"
        )
