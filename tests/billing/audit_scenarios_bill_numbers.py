"""Audit scenarios of billing.services.bill_numbers (merged by
tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable

from portal.audit.events import AuditEvent
from tests.conftest import World

SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {}

EXEMPT: dict[str, str] = {
    "billing.services.bill_numbers.bill_number_format": "formats a bill number, changes nothing",
    "billing.services.bill_numbers.bill_payment_reference": "derives a reference, changes nothing",
    "billing.services.bill_numbers.bill_payment_reference_valid": (
        "checks a reference, changes nothing"
    ),
}
