"""Bill PDFs people recognise: a section per utility with its unit and meter readings, the tax
once, the bill number and the payment reference; charts that render; English and Chinese.

The PDF's text is read back with pdftotext (poppler-utils), as a person copying from it would.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import translation

from billing.models import Bill
from billing.pdf import bill_context, bill_pdf_html, bill_pdf_render
from billing.services.bill_numbers import bill_payment_reference_valid
from billing.services.bills import bill_create, bill_issue, bill_run_execute
from tests.billing.test_bills import MARCH, NOW, local_hours, postpaid
from tests.billing.two_utilities import TwoUtilities, two_utility_bill
from tests.factories import SYSTEM, make_organisation

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


def pdf_text(pdf: bytes) -> str:
    """The PDF's text in reading order (pdftotext -layout keeps each table row on a line)."""
    assert shutil.which("pdftotext"), "install poppler-utils: scripts/system-deps.sh test"
    done = subprocess.run(
        ["pdftotext", "-layout", "-enc", "UTF-8", "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
    )
    return done.stdout.decode()


def english_context(*, bill: Bill) -> dict[str, Any]:
    """The bill's context in English, whatever language an earlier test left active."""
    with translation.override("en"):
        return bill_context(bill=bill)


def _kwh(base: int) -> str:
    return f"{Decimal(base) / 1000:,.3f}"


@pytest.fixture
def flat() -> TwoUtilities:
    return two_utility_bill()


def test_a_two_utility_bill_has_a_section_per_utility_with_its_unit_and_readings(
    flat: TwoUtilities,
) -> None:
    bill = flat.bill
    text = pdf_text(bill_pdf_render(bill=bill, language="en"))
    lines = [" ".join(line.split()) for line in text.splitlines()]

    # The bill number of the issuer's series (January and February came first).
    assert bill.number == "HR-2026-000003"
    assert f"Bill {bill.number}" in lines[0] or any(f"Bill {bill.number}" in x for x in lines)
    period = "2026-03-01 \N{EN DASH} 2026-03-31"
    for shown in (flat.account.number, period, "2026-04-02", "2026-04-16"):
        assert shown in text
    assert "12 Harbour Road, flat 2B, Keelung" in text

    # One section per service point, each in its own unit; volumes in m³, never m3.
    assert "Electricity · SP-2B-E" in lines and "Water · SP-2B-W" in lines
    assert "Meter readings (kWh)" in lines and "Meter readings (m³)" in lines
    assert not re.search(r"\bm3\b", text)
    # No figure adds kWh to m³: each consumption is stated with its unit.
    context = english_context(bill=bill)
    electricity, water = context["sections"]
    assert f"Consumption billed: {electricity.consumption} kWh" in lines
    assert f"Consumption billed: {water.consumption} m³" in lines

    # Readings at the period's boundaries, each with its time under it; the electricity end
    # reading was never read, so the import's estimate is shown, marked E.
    def reading(meter: str) -> tuple[str, str]:
        at = next(i for i, line in enumerate(lines) if line.startswith(meter))
        return lines[at], lines[at + 1]

    assert reading("E-2B-100") == (
        f"E-2B-100 {_kwh(12_345_678)} {_kwh(flat.electricity_end)} E "
        f"{_kwh(flat.electricity_end - 12_345_678)}",
        "2026-03-01 00:00 2026-04-01 00:00",
    )
    # The water meter was exchanged on the 15th: both meters, each over its own part.
    assert reading("W-2B-OLD") == (
        f"W-2B-OLD {_kwh(345_120)} {_kwh(flat.water_old_end)} {_kwh(flat.water_old_end - 345_120)}",
        "2026-03-01 00:00 2026-03-15 10:00",
    )
    assert reading("W-2B-NEW") == (
        f"W-2B-NEW 0.000 {_kwh(flat.water_new_end)} {_kwh(flat.water_new_end)}",
        "2026-03-15 10:00 2026-04-01 00:00",
    )
    # What the registers moved is what was billed, and what the daily charts add up to.
    assert [s.charts[0].total for s in (electricity, water)] == [
        electricity.consumption,
        water.consumption,
    ]
    assert electricity.consumption == _kwh(flat.electricity_end - 12_345_678)
    used = flat.water_old_end - 345_120 + flat.water_new_end
    assert water.consumption == _kwh(used)

    # The tax once, in the totals; no line of charges is a tax line.
    taxes = [line for line in lines if re.search(r"\bTax\b", line)]
    assert taxes == [f"Tax 5 % on {context['subtotal']} {context['tax']}"]
    assert text.count(f" {context['tax']}") == 1
    assert f"Amount due {context['total']}" in " ".join(lines)

    # The payment reference, grouped by four, with its check digit.
    reference = context["payment_reference"]
    assert reference.replace(" ", "") == bill.payment_reference
    assert bill.payment_reference.startswith(re.sub("[^0-9A-Z]", "", flat.account.number))
    assert bill_payment_reference_valid(reference)
    assert f"Payment reference {reference}" in lines[:20] or reference in text
    assert "Pay by bank transfer to Smart Meter Portal, Demo Bank (bank code 999)" in " ".join(
        lines
    )


def test_the_chinese_bill_is_in_chinese_with_the_same_figures(flat: TwoUtilities) -> None:
    bill = flat.bill
    text = pdf_text(bill_pdf_render(bill=bill, language="zh-hant"))
    with translation.override("zh-hant"):
        context = bill_context(bill=bill)
        words = [
            translation.gettext(english)
            for english in ("Electricity", "Water", "Payment reference", "Amount due", "How to pay")
        ]
    for word in words:
        assert word in text and word.isascii() is False
    for shown in (bill.number, context["total"], context["payment_reference"], "m³", "kWh"):
        assert shown in text
    assert not re.search(r"\bm3\b", text)


def test_bill_charts_are_valid_svg_with_finite_sizes_and_colours(flat: TwoUtilities) -> None:
    context = english_context(bill=flat.bill)
    charts = [chart.svg for section in context["sections"] for chart in section.charts]
    charts += [history.chart.svg for history in context["history_charts"]]
    # A daily chart per utility and one of the previous periods per utility.
    assert len(charts) == 4
    for svg in charts:
        root = ET.fromstring(svg)  # noqa: S314 - our own markup
        assert root.tag == f"{SVG}svg"
        width, height = float(root.attrib["width"]), float(root.attrib["height"])  # not money
        assert math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0
        assert root.attrib["viewBox"] == f"0 0 {root.attrib['width']} {root.attrib['height']}"
        bars = root.findall(f"{SVG}rect")
        assert bars
        for bar in bars:
            x, y, w, h = (float(bar.attrib[k]) for k in ("x", "y", "width", "height"))  # not money
            assert all(math.isfinite(v) for v in (x, y, w, h))
            assert x >= 0 and y >= 0 and w > 0 and x + w <= width and y + h <= height
            # Coloured by attribute: WeasyPrint draws a rect without one black.
            assert re.fullmatch(r"#[0-9a-f]{6}", bar.attrib["fill"])
    # Previous periods: January, February and this March, in the unit of each utility.
    titles = [history.chart.title for history in context["history_charts"]]
    assert titles == [
        "Electricity: this period and the ones before (kWh)",
        "Water: this period and the ones before (m³)",
    ]
    assert [row.period_start.month for row in context["history_rows"]] == [1, 2, 3]


def test_a_chart_of_nothing_is_still_drawable() -> None:
    account, _sp = postpaid()
    bill = bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW)
    context = english_context(bill=bill)
    (section,) = context["sections"]
    root = ET.fromstring(section.charts[0].svg)  # noqa: S314 - our own markup
    assert root.findall(f"{SVG}rect") == []  # no bar, no zero-height rectangle, no NaN
    assert "NaN" not in section.charts[0].svg and "inf" not in section.charts[0].svg.lower()


def test_a_zh_hant_bill_pdf_renders_its_cjk_text() -> None:
    organisation = make_organisation("台灣水電股份有限公司")
    account, sp = postpaid("王小明", organisation=organisation)
    local_hours(account, sp, MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    bill = Bill.objects.get(account=account)

    pdf = bill_pdf_render(bill=bill, language="zh-hant")

    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert "王小明" in text
    assert "台灣水電股份有限公司" in text
    assert account.number in text
    # A name without Latin letters: the series is named after the organisation's id.
    assert bill.number == f"ORG{organisation.pk}-2026-000001" and bill.number in text
    with translation.override("zh-hant"):
        label = translation.gettext("Account number")
    assert label != "Account number" and label in text


def test_estimated_consumption_is_visible_in_the_pdf() -> None:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 20)
    local_hours(account, sp, MARCH.replace(day=21), 11, estimated=500)
    bill = bill_issue(
        bill=bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW),
        actor=SYSTEM,
        as_of=NOW,
    )
    assert bill.has_estimates
    text = " ".join(pdf_text(bill_pdf_render(bill=bill, language="en")).split())
    assert "includes estimated consumption" in text
    assert f"Bill {bill.number}" in text
    # The line holding estimated hours is marked; a flat tariff's line has no blocks.
    assert "Consumption E 744.000 kWh 2.5 1,860.00" in text


def test_the_page_has_a_daily_chart_and_the_previous_periods() -> None:
    account, sp = postpaid()
    for month in (1, 2, 3):
        local_hours(account, sp, MARCH.replace(month=month), 28)
        bill_create(
            account=account, period_start=MARCH.replace(month=month), actor=SYSTEM, as_of=NOW
        )
    bill = Bill.objects.get(account=account, period_start=MARCH)
    html = bill_pdf_html(bill=bill, language="en")
    assert html.count("<svg") == 2
    context = english_context(bill=bill)
    (daily,) = context["sections"][0].charts
    assert daily.svg.count("<rect") == 28  # the 28 days with consumption of March's 31
    (history,) = context["history_charts"]
    assert history.chart.svg.count('fill="#1d3f66"') == 1  # this period, highlighted
    for shown in ("2026-01", "2026-02", "2026-03"):
        assert shown in html
    with pytest.raises(ValueError, match="rendered in"):
        bill_pdf_html(bill=bill, language="fr")


def _screenshots() -> Path:
    from tests.browser.conftest import screenshots_dir

    return screenshots_dir()


def test_the_two_utility_bill_pdf_pages_are_saved_as_png(flat: TwoUtilities) -> None:
    """`make screenshots` keeps these: every page of the bill in both languages, to look at."""
    assert shutil.which("pdftoppm"), "install poppler-utils: scripts/system-deps.sh test"
    folder = _screenshots()
    for language in ("en", "zh-hant"):
        pdf = folder / f"bill-two-utilities-{language}.pdf"
        pdf.write_bytes(bill_pdf_render(bill=flat.bill, language=language))
        for old in folder.glob(f"bill-two-utilities-{language}-page-*.png"):
            old.unlink()
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "110",
                str(pdf),
                str(folder / f"bill-two-utilities-{language}-page"),
            ],
            check=True,
        )
        pages = sorted(folder.glob(f"bill-two-utilities-{language}-page-*.png"))
        assert 1 <= len(pages) <= 4
        assert all(page.stat().st_size > 10_000 for page in pages)


def test_register_values_between_readings_are_interpolated_and_marked_estimated() -> None:
    from meters.models import Register
    from meters.selectors.readings import RegisterInstant, RegisterValue, register_values_at
    from tests.meters.helpers import csv_rows, run_import

    t0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)
    # Readings at 00:00, 01:00 and (after a gap too long to estimate) 05:00; then a reset.
    rows = [(t0, 100.0), (t0 + hour, 101.0), (t0 + 5 * hour, 105.0), (t0 + 6 * hour, 2.0)]
    run_import(csv_rows("RV1", [(t.isoformat(), v) for t, v in rows]))
    register = Register.objects.get(meter__serial="RV1")

    def at(when: dt.datetime, lo: dt.datetime = t0, hi: dt.datetime | None = None) -> object:
        (value,) = register_values_at(instants=[RegisterInstant(register.pk, when, lo, hi)])
        return value

    assert at(t0 + hour) == RegisterValue(101_000, False)  # read at that instant
    assert at(t0 + 3 * hour) == RegisterValue(103_000, True)  # halfway: 101 -> 105 kWh
    # The reset after it is suspect and not used: the last good value is carried.
    assert at(t0 + 5 * hour + hour / 2) == RegisterValue(105_000, True)
    assert at(t0 + 3 * hour, hi=t0 + 4 * hour) == RegisterValue(101_000, True)  # bounds
    assert at(t0 - hour, lo=t0 - 2 * hour) == RegisterValue(100_000, True)  # only after
    assert at(t0 - hour, lo=t0 - 2 * hour, hi=t0 - hour) is None  # nothing in bounds
    assert register_values_at(instants=[]) == []
