"""manage.py ledger_verify: check every ledger invariant; exit 1 at the first violation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.services.verify import ledger_verify


class Command(BaseCommand):
    help = (
        "Check that every journal entry balances, the ledger sums to zero, each wallet's "
        "balance equals its postings and no payment is credited twice; report the first "
        "violation and exit with status 1."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_verify()
        if report.violation is not None:
            raise CommandError(
                f"ledger violation ({report.violation.check}): {report.violation.message}"
            )
        self.stdout.write(
            f"ledger OK: {report.entries} entries, {report.postings} postings, "
            f"{report.wallets} wallets, {report.topups} top-ups checked"
        )
