"""Audit scenarios of billing.services.notices (merged by tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable

from portal.audit.events import AuditEvent
from tests.conftest import World

SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {}

EXEMPT: dict[str, str] = {
    "billing.services.notices.warning_notices_queue": (
        "called inside shortage_warnings_run, whose one entry records the run"
    ),
    "billing.services.notices.bill_notices_queue_for": (
        "called inside bill_notices_queue, whose one entry records the notices"
    ),
}
