"""Bill PDFs render Traditional Chinese text, the account, and the estimated-data notice."""

from __future__ import annotations

import io

import pytest
from django.utils import translation

from billing.models import Bill
from billing.pdf import bill_pdf_html, bill_pdf_render
from billing.services.bills import bill_create, bill_issue, bill_run_execute
from tests.billing.test_bills import MARCH, NOW, local_hours, postpaid
from tests.factories import SYSTEM, make_organisation

pytestmark = pytest.mark.django_db


def _text(pdf: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)


def test_a_zh_hant_bill_pdf_renders_its_cjk_text() -> None:
    pytest.importorskip("weasyprint")
    organisation = make_organisation("台灣水電股份有限公司")
    account, sp = postpaid("王小明", organisation=organisation)
    local_hours(account, sp, MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, now=NOW)
    bill = Bill.objects.get(account=account)

    pdf = bill_pdf_render(bill=bill, language="zh-hant")

    assert pdf.startswith(b"%PDF")
    text = _text(pdf)
    assert "王小明" in text
    assert "台灣水電股份有限公司" in text
    assert account.number in text
    with translation.override("zh-hant"):
        label = translation.gettext("account number")
    if label != "account number":  # translated in the catalog: the label is on the bill too
        assert label in text


def test_estimated_consumption_is_visible_in_the_pdf() -> None:
    pytest.importorskip("weasyprint")
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 20)
    local_hours(account, sp, MARCH.replace(day=21), 11, estimated=500)
    bill = bill_issue(
        bill=bill_create(account=account, period_start=MARCH, actor=SYSTEM, now=NOW),
        actor=SYSTEM,
        now=NOW,
    )
    assert bill.has_estimates
    text = _text(bill_pdf_render(bill=bill, language="en"))
    assert "includes estimated consumption" in " ".join(text.split())
    assert f"Bill {bill.number}" in text


def test_the_page_has_a_daily_chart_and_the_previous_periods() -> None:
    account, sp = postpaid()
    for month in (1, 2, 3):
        local_hours(account, sp, MARCH.replace(month=month), 28)
        bill_create(account=account, period_start=MARCH.replace(month=month), actor=SYSTEM, now=NOW)
    bill = Bill.objects.get(account=account, period_start=MARCH)
    html = bill_pdf_html(bill=bill, language="en")
    assert html.count("<svg") == 2
    assert html.count('class="bar"') == 31 + 2  # March's days, then January and February
    assert 'class="bar now"' in html
    for shown in ("2026-01", "2026-02", "2026-03"):
        assert shown in html
    with pytest.raises(ValueError, match="rendered in"):
        bill_pdf_html(bill=bill, language="fr")
