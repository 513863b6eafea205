"""Celery interfaces of the audit app."""

from __future__ import annotations

import logging

from portal.audit.selectors import audit_chain_verify
from portal.audit.services import audit_anchor_record
from portal.celery import app

logger = logging.getLogger(__name__)


@app.task(acks_late=True)
def audit_chain_verify_task(**kwargs: object) -> bool:
    """Verify every chain nightly; log an error naming the first break, else anchor the heads."""
    report = audit_chain_verify()
    if not report.ok:
        if report.broken_anchor_id is not None:
            logger.error(
                "audit log BROKEN at anchor %s: %s", report.broken_anchor_id, report.reason
            )
        else:
            logger.error(
                "audit log chain %s BROKEN at row %s: %s",
                report.broken_chain,
                report.broken_id,
                report.reason,
            )
        return False
    audit_anchor_record(heads=report.heads, entries_verified=report.entries)
    logger.info("audit log OK: %s rows in %s chains", report.entries, report.chains)
    return True


@app.task(acks_late=True)
def audit_anchor_task(**kwargs: object) -> bool:
    """Anchor every chain's head (when one moved), so that a cut tail is caught between the
    nightly verifications too. Cheap: one index probe per chain."""
    return audit_anchor_record(only_if_moved=True) is not None
