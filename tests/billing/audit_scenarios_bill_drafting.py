"""Audit scenarios of billing.services.bill_drafting (merged by
tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable

from portal.audit.events import AuditEvent
from tests.conftest import World

SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {}

EXEMPT: dict[str, str] = {}
