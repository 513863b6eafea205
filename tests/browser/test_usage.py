"""A resident opens the usage page: plotly.js (vendored) draws the chart under the CSP."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from meters.models import RollupDaily, ServicePoint
from meters.services.supply import supply_start
from portal.tenancy.roles import Role
from tests.browser.axe import serious_violations
from tests.factories import PASSWORD, SYSTEM, make_account, make_membership, make_user

pytestmark = [pytest.mark.browser]


def test_the_usage_chart_draws_without_csp_violations(
    live_server: Any, page: Page, transactional_db: None, shots: Path
) -> None:
    account = make_account("Lin household")
    sp = ServicePoint.objects.create(code="SP-B1", kind="electricity", time_zone="Asia/Taipei")
    supply_start(
        account=account,
        service_point=sp,
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        actor=SYSTEM,
    )
    today = timezone.now().date()
    for back in range(1, 20):
        RollupDaily.objects.create(
            service_point=sp,
            direction="import",
            day=today - dt.timedelta(days=back),
            account=account,
            consumption=6000 + 150 * (back % 7),
            estimated=800 if back == 5 else 0,
            reading_count=96,
            hours=24,
        )
    user = make_user("lin@example.com")
    make_membership(user, Role.OWNER, account=account)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email").fill("lin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.goto(f"{live_server.url}/a/{account.public_id}/")
    expect(page.get_by_role("heading", name="This month")).to_be_visible()
    page.screenshot(path=str(shots / "account-home-en.png"), full_page=True)
    assert serious_violations(page) == []
    page.get_by_role("link", name="Usage").click()
    page.get_by_label("Range").select_option("month")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".usage-chart .main-svg").first).to_be_visible()
    expect(page.locator(".usage-chart .bars path").first).to_be_attached()
    expect(page.get_by_role("table")).to_contain_text("Imported")
    page.screenshot(path=str(shots / "usage-month-en.png"), full_page=True)
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
    assert serious_violations(page) == []

    # The same page in Traditional Chinese: translated, and just as accessible.
    page.get_by_role("button", name="繁體中文").click()
    expect(page.get_by_role("link", name="用量")).to_be_visible()
    expect(page.locator(".usage-chart .main-svg").first).to_be_visible()
    page.screenshot(path=str(shots / "usage-month-zh-hant.png"), full_page=True)
    assert serious_violations(page) == []
