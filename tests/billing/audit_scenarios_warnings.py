"""Audit scenarios of billing.services.warnings (merged by tests/portal/test_audit_per_service)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from billing.services import warnings
from portal.audit.events import AuditEvent
from tests.billing.helpers import bill_numbers
from tests.conftest import World
from tests.factories import SYSTEM

NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)


def _run(world: World) -> Callable[[], object]:
    from tests.billing.test_warnings import short_wallet

    short_wallet(account=world.acc1)
    return lambda: warnings.shortage_warnings_run(as_of=NOW, actor=SYSTEM)


def _delete(world: World) -> Callable[[], object]:
    policy = warnings.warning_policy_save(organisation=world.sub1, thresholds=[5], actor=SYSTEM)
    return lambda: warnings.warning_policy_delete(policy=policy, actor=SYSTEM)


def _bill_notices(world: World) -> Callable[[], object]:
    from billing.models import Bill

    issued_at = NOW - dt.timedelta(hours=1)
    Bill.objects.create(
        account=world.account_a,
        **bill_numbers(1),
        period_start=dt.date(2026, 4, 1),
        period_end=dt.date(2026, 5, 1),
        currency="TWD",
        status="issued",
        issued_at=issued_at,
        due_at=issued_at + dt.timedelta(days=14),
        created_at=issued_at,
    )
    return lambda: warnings.bill_notices_queue(as_of=NOW, actor=SYSTEM)


SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {
    "billing.services.warnings.shortage_warnings_run": (_run, AuditEvent.SHORTAGE_WARNINGS_RUN),
    "billing.services.warnings.warning_policy_save": (
        lambda w: (
            lambda: warnings.warning_policy_save(account=w.acc1, thresholds=[10, 5], actor=SYSTEM)
        ),
        AuditEvent.WARNING_POLICY_SAVED,
    ),
    "billing.services.warnings.warning_policy_delete": (_delete, AuditEvent.WARNING_POLICY_DELETED),
    "billing.services.warnings.bill_notices_queue": (
        _bill_notices,
        AuditEvent.BILL_NOTICES_QUEUED,
    ),
}

EXEMPT: dict[str, str] = {
    "billing.services.warnings.thresholds_clean": "pure validation of thresholds; writes nothing",
}
