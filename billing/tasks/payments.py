"""Celery tasks: top-up reconciliation (every five minutes) and the nightly ledger check."""

from __future__ import annotations

import logging

from django.utils import timezone

from billing.services.topups import topups_reconcile
from billing.services.verify import ledger_verify
from portal.audit.actors import SystemActor
from portal.celery import app

logger = logging.getLogger(__name__)


@app.task(acks_late=True)
def topups_reconcile_task(**kwargs: object) -> dict[str, int]:
    """Settle top-ups whose outcome the provider has not told us (timeouts, lost webhooks)."""
    report = topups_reconcile(
        actor=SystemActor("task:billing.topups_reconcile"), as_of=timezone.now()
    )
    return vars(report)


@app.task(acks_late=True)
def ledger_verify_task(**kwargs: object) -> dict[str, object]:
    """Check every ledger invariant; log the first violation as an error for the on-call."""
    report = ledger_verify()
    if report.violation is not None:
        logger.error("ledger_verify: %s: %s", report.violation.check, report.violation.message)
    return {
        "ok": report.ok,
        "entries": report.entries,
        "wallets": report.wallets,
        "violation": report.violation.message if report.violation else None,
    }
