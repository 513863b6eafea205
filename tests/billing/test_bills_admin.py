"""The bills admin: start a run, void with a reason, mark paid, download the PDF."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.test import Client
from django.urls import reverse

from billing.models import Bill
from billing.services.bills import bill_run_execute
from tests.billing.test_bills import MARCH, NOW, local_hours, postpaid
from tests.factories import SYSTEM, make_user

pytestmark = pytest.mark.django_db


def _staff() -> Client:
    user = make_user("root@utility.example", staff=True)
    TOTP.activate(user, generate_totp_secret())
    client = Client()
    client.force_login(user)
    return client


def account_point(account: Any) -> Any:
    from billing.models import TariffAssignment

    return TariffAssignment.objects.get(account=account).service_point


def _bill() -> Bill:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    return Bill.objects.get(account=account)


def test_staff_start_a_bill_run_for_a_month(django_capture_on_commit_callbacks: Any) -> None:
    client = _staff()
    url = reverse("admin:billing_billrun_start")
    assert client.get(url).status_code == 200
    with (
        mock.patch("billing.admin.bills.bill_run_task.apply_async") as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(url, {"month": "2026-03-17"})
    assert response.status_code == 302
    enqueue.assert_called_once_with(kwargs={"period_start": "2026-03-01"})
    assert client.get(reverse("admin:billing_billrun_changelist")).status_code == 200


def test_void_asks_for_a_reason_then_issues_a_credit_note() -> None:
    bill = _bill()
    client = _staff()
    changelist = reverse("admin:billing_bill_changelist")
    asked = client.post(changelist, {"action": "void", "_selected_action": [bill.pk]})
    assert asked.status_code == 200 and b"reason" in asked.content
    done = client.post(
        changelist, {"action": "void", "_selected_action": [bill.pk], "reason": "misread"}
    )
    assert done.status_code == 302
    bill.refresh_from_db()
    assert bill.status == Bill.Status.VOID
    assert (bill.credit_note.sequence_number, bill.credit_note.number) == (2, "RES-2026-000002")
    page = client.get(reverse("admin:billing_bill_change", args=[bill.pk]))
    assert page.status_code == 200 and b"misread" in page.content


def test_mark_paid_and_pdf_download() -> None:
    bill = _bill()
    client = _staff()
    changelist = reverse("admin:billing_bill_changelist")
    client.post(changelist, {"action": "mark_paid", "_selected_action": [bill.pk]})
    bill.refresh_from_db()
    assert bill.status == Bill.Status.PAID
    assert client.get(reverse("admin:billing_bill_pdf", args=[bill.pk, "xx"])).status_code == 404
    pytest.importorskip("weasyprint")
    response = client.get(reverse("admin:billing_bill_pdf", args=[bill.pk, "zh-hant"]))
    assert response.status_code == 200 and response.content.startswith(b"%PDF")


def test_staff_find_a_bill_by_its_number_or_payment_reference() -> None:
    accounts = [postpaid()[0], postpaid()[0]]
    for account in accounts:
        local_hours(account, account_point(account), MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    bill, other = (Bill.objects.get(account=account) for account in accounts)
    client = _staff()
    changelist = reverse("admin:billing_bill_changelist")
    for query in (bill.number, bill.payment_reference):
        found = client.get(changelist, {"q": query})
        assert found.context["cl"].result_count == 1
        assert list(found.context["cl"].result_list) == [bill]
    assert other.number != bill.number
    page = client.get(reverse("admin:billing_bill_change", args=[bill.pk])).content.decode()
    assert bill.number in page and bill.payment_reference in page


def test_a_running_bill_run_shows_its_progress_and_polls_until_done() -> None:
    import datetime as dt

    from billing.models import BillRun

    first, _sp = postpaid()
    second, sp2 = postpaid()
    local_hours(first, _sp, MARCH, 31)
    local_hours(second, sp2, MARCH, 31)
    run = bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    client = _staff()
    page = client.get(reverse("admin:billing_billrun_change", args=[run.pk])).content.decode()
    assert "2 of 2 accounts billed (100%)" in page
    assert 'hx-trigger="every 2s"' not in page  # done: nothing to poll
    # A run that stopped half way (one bill made, one account left) polls its progress.
    Bill.objects.filter(account=second).update(run=None, period_start=dt.date(2026, 2, 1))
    BillRun.objects.filter(pk=run.pk).update(status=BillRun.Status.RUNNING)
    fragment = client.get(reverse("admin:billing_billrun_progress", args=[run.pk]))
    body = fragment.content.decode()
    assert "1 of 2 accounts billed (50%)" in body
    assert 'hx-trigger="every 2s"' in body and "X-Portal-Passive" in body
    assert Client().get(reverse("admin:billing_billrun_progress", args=[run.pk])).status_code == 302
