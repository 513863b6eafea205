"""The bill page of a two-utility flat in a real Chromium: both languages, a desktop and a
phone, no console error or CSP violation, nothing wider than the phone. Screenshots go to
SCREENSHOTS_DIR as bill-page-two-utilities-<lang>[-phone].png (`make screenshots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.utils import translation
from playwright.sync_api import Page, ViewportSize, expect

from portal.tenancy.roles import Role
from tests.billing.two_utilities import two_utility_bill
from tests.browser.conftest import screenshots_dir, sign_in
from tests.browser.pages import horizontal_overflow
from tests.factories import make_membership, make_user

pytestmark = [pytest.mark.browser]


def bill_context_total(bill_id: int, lang: str) -> str:
    """The total the page must show: the bill context's, computed once for both pages."""
    from billing.models import Bill
    from billing.pdf import bill_context

    with translation.override(lang):
        total: str = bill_context(bill=Bill.objects.get(pk=bill_id))["total"]
    return total


DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


def test_the_bill_page_in_both_languages_on_a_desktop_and_a_phone(
    live_server: Any, page: Page, transactional_db: None
) -> None:
    flat = two_utility_bill()
    member = make_user("flat2b@example.com")
    make_membership(member, Role.OWNER, account=flat.account)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    sign_in(page, live_server.url, member.email)
    bill_url = f"{live_server.url}/a/{flat.account.public_id}/bills/{flat.bill.public_id}/"
    list_url = f"{live_server.url}/a/{flat.account.public_id}/bills/"
    shots: Path = screenshots_dir()
    for lang, button in (("en", "English"), ("zh-hant", "繁體中文")):
        if lang != "en":  # through the language selector, in the desktop's navigation bar
            page.set_viewport_size(DESKTOP)
            page.get_by_role("button", name=button, exact=True).click()
            expect(page.locator("html")).to_have_attribute("lang", lang)
        with translation.override(lang):
            electricity = translation.gettext("Electricity")
        for viewport, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
            page.set_viewport_size(viewport)
            page.goto(bill_url)
            heading = page.get_by_role("heading", name=f"{electricity} · SP-2B-E")
            expect(heading).to_be_visible()
            expect(page.locator("#bill-total")).to_have_text(bill_context_total(flat.bill.pk, lang))
            expect(page.locator("svg.bill-chart")).to_have_count(4)
            assert horizontal_overflow(page) == 0, f"{lang}{suffix}: wider than the window"
            name = f"two-utilities-{lang}{suffix}.png"
            page.screenshot(path=str(shots / f"bill-page-{name}"), full_page=True)
            page.goto(list_url)
            expect(page.get_by_role("link", name=flat.bill.number, exact=True)).to_be_visible()
            assert horizontal_overflow(page) == 0, f"{lang}{suffix}: the list is too wide"
            page.screenshot(path=str(shots / f"bills-list-{name}"), full_page=True)
    assert problems == []
