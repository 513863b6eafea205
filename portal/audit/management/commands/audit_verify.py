"""manage.py audit_verify: check the audit log's hash chain; print OK or the first broken row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit.selectors import audit_chain_verify
from portal.audit.services import audit_checkpoint_record


class Command(BaseCommand):
    help = "Verify the audit log's hash chain. Prints OK, or the id of the first broken row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoint",
            action="store_true",
            help="On success, record the verified head so that later removal of rows from the "
            "end of the log is detected too.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify()
        if not report.ok:
            raise CommandError(
                f"BROKEN at row {report.broken_id}: {report.reason} "
                f"({report.entries} rows before it verified)"
            )
        if options["checkpoint"] and report.head_id is not None and report.head_hash:
            audit_checkpoint_record(
                entry_id=report.head_id, entry_hash_value=report.head_hash, entries=report.entries
            )
        self.stdout.write(f"OK {report.entries} rows verified")
