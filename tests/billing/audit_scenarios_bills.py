"""Audit scenarios of billing.services.bills (merged by tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable

from billing.models import Bill
from billing.services import bills
from portal.audit.events import AuditEvent
from tests.billing.test_bills import MARCH, NOW, local_hours, postpaid
from tests.conftest import World
from tests.factories import SYSTEM


def _draft(world: World) -> Bill:
    account, sp = postpaid(organisation=world.sub1)
    local_hours(account, sp, MARCH, 2)
    return bills.bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW)


def _issued(world: World) -> Bill:
    return bills.bill_issue(bill=_draft(world), actor=SYSTEM, as_of=NOW)


def _create(world: World) -> Callable[[], object]:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 2)
    return lambda: bills.bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW)


def _run(world: World) -> Callable[[], object]:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 2)
    return lambda: bills.bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)


def _issue(world: World) -> Callable[[], object]:
    bill = _draft(world)
    return lambda: bills.bill_issue(bill=bill, actor=SYSTEM, as_of=NOW)


def _pay(world: World) -> Callable[[], object]:
    bill = _issued(world)
    return lambda: bills.bill_mark_paid(bill=bill, actor=SYSTEM, as_of=NOW)


def _void(world: World) -> Callable[[], object]:
    bill = _issued(world)
    return lambda: bills.bill_void(bill=bill, reason="misread", actor=SYSTEM, as_of=NOW)


def _pdf_download(world: World) -> Callable[[], object]:
    bill = _issued(world)
    return lambda: bills.bill_pdf_download_record(bill=bill, actor=SYSTEM, language="en")


SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {
    # One entry for a whole run, whatever the number of bills it issues.
    "billing.services.bills.bill_run_execute": (_run, AuditEvent.BILL_RUN_FINISHED),
    "billing.services.bills.bill_create": (_create, AuditEvent.BILL_CREATED),
    "billing.services.bills.bill_issue": (_issue, AuditEvent.BILL_ISSUED),
    "billing.services.bills.bill_mark_paid": (_pay, AuditEvent.BILL_PAID),
    "billing.services.bills.bill_void": (_void, AuditEvent.BILL_VOIDED),
    "billing.services.bills.bill_pdf_download_record": (
        _pdf_download,
        AuditEvent.BILL_PDF_DOWNLOADED,
    ),
}

EXEMPT: dict[str, str] = {}
