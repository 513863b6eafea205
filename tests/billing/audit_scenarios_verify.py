"""Audit scenarios of billing.services.verify (merged by tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from portal.audit.events import AuditEvent
from tests.conftest import World

SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], Any]], AuditEvent]] = {}

EXEMPT: dict[str, str] = {
    "billing.services.verify.ledger_verify": "read-only check of the ledger; changes nothing",
}
