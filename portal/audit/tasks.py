"""Celery interfaces of the audit app."""

from __future__ import annotations

import logging

from portal.audit.selectors import audit_chain_verify
from portal.audit.services import audit_checkpoint_record
from portal.celery import app

logger = logging.getLogger(__name__)


@app.task(acks_late=True)
def audit_chain_verify_task(**kwargs: object) -> bool:
    """Verify the chain nightly; log an error naming the first broken row, else checkpoint."""
    report = audit_chain_verify()
    if not report.ok:
        logger.error("audit log chain BROKEN at row %s: %s", report.broken_id, report.reason)
        return False
    if report.head_id is not None and report.head_hash:
        audit_checkpoint_record(
            entry_id=report.head_id, entry_hash_value=report.head_hash, entries=report.entries
        )
    logger.info("audit log chain OK: %s rows", report.entries)
    return True
