"""manage.py audit_verify: check the audit log's hash chains; print OK or the first break."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit.selectors import audit_chain_verify
from portal.audit.services import audit_anchor_record


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chains (one per tenant root) and their anchors. Prints OK, "
        "or the chain and id of the first broken row."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoint",
            "--anchor",
            action="store_true",
            dest="checkpoint",
            help="On success, record an anchor of every chain's verified head, so that later "
            "removal of rows from the end of a chain is detected too.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify()
        if not report.ok:
            if report.broken_anchor_id is not None:
                raise CommandError(f"BROKEN at anchor {report.broken_anchor_id}: {report.reason}")
            raise CommandError(
                f"BROKEN at row {report.broken_id} of chain {report.broken_chain}: "
                f"{report.reason} ({report.entries} rows before it verified)"
            )
        if options["checkpoint"]:
            audit_anchor_record(heads=report.heads, entries_verified=report.entries)
        self.stdout.write(f"OK {report.entries} rows verified in {report.chains} chains")
