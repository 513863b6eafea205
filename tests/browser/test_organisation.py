"""A group manager drills from the group into a subsidiary and one of its accounts, then exports
the group's accounts table as CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from portal.tenancy.models import Account
from tests.browser.conftest import sign_in
from tests.browser.world import Harbour

pytestmark = [pytest.mark.browser]


def test_a_group_manager_drills_down_and_exports_the_accounts(
    live_server: Any, page: Page, harbour: Harbour, shots: Path, tmp_path: Path
) -> None:
    sign_in(page, live_server.url, harbour.group_manager.email)
    page.get_by_role("link", name=harbour.group.name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(harbour.group.name)
    page.screenshot(path=str(shots / "organisation-group-en.png"), full_page=True)

    # Into the subsidiary, its accounts table, a search, and one account.
    page.get_by_role("main").get_by_role("link", name=harbour.residential.name).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(harbour.residential.name)
    page.get_by_role("link", name="Accounts", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(harbour.residential.name)
    table = page.get_by_role("table")
    numbers = table.locator("tbody tr td:first-child a")
    residential = Account.objects.filter(organisation=harbour.residential)
    expect(numbers).to_have_count(residential.count())
    assert set(numbers.all_inner_texts()) == {a.number for a in residential}
    search = page.get_by_label("Search")
    search.fill(harbour.postpaid.name)
    with page.expect_navigation():
        search.press("Enter")
    expect(numbers).to_have_text([harbour.postpaid.number])
    numbers.first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(harbour.postpaid.name)
    page.screenshot(path=str(shots / "organisation-drilled-account-en.png"), full_page=True)

    # The whole group's accounts, as a CSV.
    page.goto(f"{live_server.url}/o/{harbour.group.public_id}/accounts/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(harbour.group.name)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    saved = tmp_path / "accounts.csv"
    download.value.save_as(saved)
    rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    every = set(Account.objects.values_list("number", flat=True))
    assert {cell for row in rows[1:] for cell in row[:1]} == every, rows


def test_a_subsidiary_asking_for_two_factor_is_withheld_from_a_manager_without_one(
    live_server: Any, page: Page, harbour: Harbour, shots: Path
) -> None:
    # Issue 12: the group's table leaves the subsidiary out and says why, in both languages.
    from portal.tenancy.services.organisations import organisation_update
    from tests.factories import SYSTEM

    organisation_update(
        organisation=harbour.residential, changes={"require_mfa": True}, actor=SYSTEM
    )
    sign_in(page, live_server.url, harbour.group_manager.email)
    page.goto(f"{live_server.url}/o/{harbour.group.public_id}/accounts/")
    banner = page.locator("#mfa-withheld")
    expect(banner).to_contain_text(harbour.residential.name)
    numbers = page.get_by_role("table").locator("tbody tr td:first-child a")
    hidden = set(
        Account.objects.filter(organisation=harbour.residential).values_list("number", flat=True)
    )
    assert hidden and not hidden & set(numbers.all_inner_texts())
    page.screenshot(path=str(shots / "organisation-mfa-withheld-en.png"), full_page=True)
    page.get_by_role("button", name="繁體中文").click()
    expect(banner).to_contain_text("雙重驗證")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(shots / "organisation-mfa-withheld-zh-hant-phone.png"), full_page=True)
