"""Residents in the browser: the prepaid household reads its dashboard, switches the chart's
ranges (also by keyboard), compares periods and tops up through the sandbox; the postpaid one
downloads a bill; a viewer does not get to member management.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import APIResponse, Page, Route, expect

from billing.selectors import credit_state
from meters.selectors.consumption import month_comparison
from portal.lib.money import format_money
from tests.browser.conftest import sign_in
from tests.browser.world import Harbour

pytestmark = [pytest.mark.browser]

FIGURE = "[data-plotly-figure='usage-figure']"


def _traces(page: Page) -> list[tuple[str, int, str]]:
    """(name, number of points, first x) of each trace plotly.js drew in the usage chart."""
    expect(page.locator(f"{FIGURE} .main-svg").first).to_be_attached()
    traces: list[tuple[str, int, str]] = page.evaluate(
        """sel => document.querySelector(sel).data.map(
               t => [t.name, t.x ? t.x.length : 0, t.x && t.x.length ? String(t.x[0]) : ''])""",
        FIGURE,
    )
    return traces


def _show(page: Page, span: str, *, compare: bool = False) -> list[tuple[str, int, str]]:
    page.get_by_label("Range").select_option(span)
    page.get_by_label("Compare with the period before").set_checked(compare)
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    expect(page.get_by_label("Range")).to_have_value(span)
    return _traces(page)


def _month_end(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def _rows(page: Page) -> int:
    return page.locator("#usage-table tbody tr").count()


def test_a_prepaid_resident_reads_the_dashboard_charts_and_tops_up(
    live_server: Any, page: Page, harbour: Harbour, shots: Path
) -> None:
    account = harbour.prepaid
    yesterday = harbour.today - dt.timedelta(days=1)
    state = credit_state(account_id=account.pk, as_of_day=harbour.today)
    assert state is not None and state.days_left is not None
    sign_in(page, live_server.url, harbour.resident.email)
    page.get_by_role("link", name=account.number).click()

    # Dashboard: credit with days left, and this month against last month and a year ago.
    expect(page.get_by_role("heading", level=1)).to_have_text(account.name)
    credit = page.get_by_role("region", name="Prepaid credit")
    expect(credit).to_contain_text(format_money(state.balance, state.currency).split()[0])
    expect(credit).to_contain_text(f"About {state.days_left} days left")
    month = page.get_by_role("region", name="This month")
    expected = month_comparison(
        account_id=account.pk, as_of=timezone.now(), time_zone=account.time_zone
    ).rows[0]
    cells = month.get_by_role("row", name="Electricity").get_by_role("cell")
    shown = [float(c.split()[0]) for c in cells.all_inner_texts()]
    wanted = [expected.this_month, expected.last_month, expected.year_ago]
    assert shown == pytest.approx([v / 1000 for v in wanted], abs=0.051)
    assert all(shown)
    expect(page.get_by_role("region", name="Alerts and meters")).to_contain_text("Battery low")

    # Usage: every range redraws the chart with the resolution the range asks for.
    page.get_by_role("link", name="Usage", exact=True).click()
    page.get_by_label("Up to").fill(yesterday.isoformat())
    # A month is the calendar month of "Up to": its days so far (today's included, if it's there).
    month_days = (min(harbour.today, _month_end(yesterday)) - yesterday.replace(day=1)).days + 1
    drawn: dict[str, list[tuple[str, int, str]]] = {}
    for span, points in (
        ("day", 96),
        ("week", 7 * 24),
        ("month", month_days),
        ("year", 12),
    ):
        drawn[span] = _show(page, span)
        assert drawn[span][0][1] == points, (span, drawn[span])
        assert _rows(page) == points
        page.screenshot(path=str(shots / f"usage-{span}-en.png"), full_page=True)
    assert len({traces[0][2] for traces in drawn.values()}) == 4  # four different starts

    # The period before, as one more trace.
    compared = _show(page, "month", compare=True)
    assert [t[0] for t in compared if t not in drawn["month"]] == ["Period before"]
    assert len(compared) == len(drawn["month"]) + 1
    expect(page.locator("#previous-total")).to_be_visible()
    page.screenshot(path=str(shots / "usage-compare-en.png"), full_page=True)

    # Top up through the sandbox checkout: the receipt and the wallet show the new balance.
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("region", name="Prepaid credit").get_by_role("link", name="Top up").click()
    page.get_by_label("Amount", exact=True).fill("200")
    page.get_by_role("button", name="Top up", exact=True).click()
    page.get_by_role("button", name="Pay", exact=True).click()
    new_balance = format_money(state.balance + 200_00, state.currency)
    expect(page.locator("#new-balance")).to_have_text(new_balance)
    page.screenshot(path=str(shots / "topup-receipt-paid-en.png"), full_page=True)
    page.get_by_role("link", name="Back to the wallet").click()
    expect(page.get_by_text(f"Balance: {new_balance}")).to_be_visible()
    expect(page.get_by_role("table")).to_contain_text("200.00 TWD")


def test_the_range_switcher_works_from_the_keyboard(
    live_server: Any, page: Page, harbour: Harbour
) -> None:
    sign_in(page, live_server.url, harbour.resident.email)
    page.goto(f"{live_server.url}/a/{harbour.prepaid.public_id}/usage/")
    week = _traces(page)
    for _ in range(60):  # Tab from the top of the page until the range select has the focus
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.name") == "range":
            break
    else:
        pytest.fail("Tab never reaches the range switcher")
    page.keyboard.press("ArrowDown")  # week -> month
    expect(page.get_by_label("Range")).to_have_value("month")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") == "Show":
            break
    else:
        pytest.fail("Tab never reaches the Show button after the range")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "range=month" in page.url
    month = _traces(page)
    assert month[0][1] == harbour.today.day and month[0][1:] != week[0][1:]


def test_a_postpaid_resident_downloads_a_bill(
    live_server: Any, page: Page, harbour: Harbour, shots: Path
) -> None:
    bill = harbour.bill
    total = format_money(bill.total, bill.currency)
    sign_in(page, live_server.url, harbour.resident.email)
    page.get_by_role("link", name=harbour.postpaid.number).click()
    # The bill to date, estimated from the tariff, and the latest bill under it.
    panel = page.get_by_role("region", name="This month so far")
    expect(panel.locator("#bill-to-date")).to_contain_text("TWD")
    expect(panel.get_by_role("heading", name="Latest bill")).to_be_visible()
    expect(panel).to_contain_text(total.split()[0])
    expect(panel).to_contain_text(f"Bill {bill.number} for")

    page.get_by_role("link", name="Bills", exact=True).click()
    row = page.get_by_role("row").filter(has_text=f"Bill {bill.number} (PDF)")
    expect(row).to_contain_text(total)
    page.screenshot(path=str(shots / "bills-list-en.png"), full_page=True)
    # Served inline (Content-Disposition: inline), so Chromium shows it in its PDF viewer
    # instead of downloading it; the bytes are caught on their way to the viewer.
    received: list[APIResponse] = []

    def keep(route: Route) -> None:
        received.append(route.fetch())
        route.fulfill(response=received[-1])

    page.route("**/pdf/", keep)
    row.get_by_role("link", name=f"Bill {bill.number} (PDF)").click()
    page.wait_for_url("**/pdf/")
    assert len(received) == 1 and received[0].status == 200
    assert received[0].headers["content-type"] == "application/pdf"
    assert received[0].body().startswith(b"%PDF")


def test_a_viewer_has_no_member_management(
    live_server: Any, page: Page, harbour: Harbour, shots: Path
) -> None:
    account = harbour.prepaid
    sign_in(page, live_server.url, harbour.viewer.email)
    page.get_by_role("link", name=account.number).click()
    tabs = page.get_by_role("list").filter(has=page.get_by_role("link", name="Overview"))
    expect(tabs.get_by_role("link", name="Usage", exact=True)).to_be_visible()
    expect(tabs.get_by_role("link", name="Members", exact=True)).to_have_count(0)

    response = page.goto(f"{live_server.url}/a/{account.public_id}/members/")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.screenshot(path=str(shots / "members-forbidden-en.png"), full_page=True)
