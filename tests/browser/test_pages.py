"""Every tenant page, in English and then in Traditional Chinese chosen through the language
selector, on a desktop and on a phone (390x844): it answers 200, says its language, has no
serious or critical axe violation, shows no untranslated English in Chinese, writes its figures
by one rule (digits grouped by three, the very same figures in both languages), fits the
phone's width without sideways scrolling of the page, and makes the browser complain of
nothing: no CSP violation (any directive: they are recorded in the page, not only read from
the console), no console error and no uncaught exception. Full-page screenshots of each go to
SCREENSHOTS_DIR as <page>-<lang>.png and <page>-phone-<lang>.png.

The pages come from the URLconf (tests/browser/pages.py), so a new page is walked without
being listed here; one needing a URL kwarg other than those in `_kwargs` is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Browser, Page, ViewportSize, expect

from billing.models import TopUp
from billing.services.topups import topup_checkout_start, topup_create
from tests.browser.axe import serious_violations
from tests.browser.conftest import sign_in
from tests.browser.pages import (
    RECORD_CSP_VIOLATIONS,
    SLUGS,
    BrowserComplaints,
    Route,
    figures,
    horizontal_overflow,
    page_text,
    slug,
    tenant_routes,
    ungrouped_figures,
    untranslated,
)
from tests.browser.world import Harbour
from tests.factories import SYSTEM

pytestmark = [pytest.mark.browser]

LANGUAGES = (("en", "English"), ("zh-hant", "繁體中文"))
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


def _kwargs(route: Route, harbour: Harbour, pending: TopUp, paid: TopUp) -> dict[str, str]:
    account = harbour.postpaid if "/bills/" in route.route else harbour.prepaid
    values = {
        "account_id": account.public_id,
        "org_id": harbour.group.public_id,
        "bill_id": harbour.bill.public_id,
        "topup_id": pending.public_id if "checkout" in route.name else paid.public_id,
    }
    return {key: str(values[key]) for key in route.kwargs}


def _url(route: Route, kwargs: dict[str, str]) -> str:
    path = route.route
    for key, value in kwargs.items():
        path = path.replace(f"<uuid:{key}>", value).replace(f"<{key}>", value)
    return "/" + path


class Walk:
    """One person's walk through their pages in each language; it collects every problem, so
    that one run shows all of them."""

    def __init__(self, page: Page, base: str, data: list[str], shots: Path) -> None:
        self.page, self.base, self.data, self.shots = page, base, data, shots
        self.complaints = BrowserComplaints(page)
        self.figures: dict[str, list[str]] = {}  # the figures of each page in English
        self.problems: list[str] = []
        self.visited = 0

    def run(self, email: str, pages: list[tuple[str, str]]) -> None:
        sign_in(self.page, self.base, email)
        self.problems += [f"sign-in: {c}" for c in self.complaints.take()]
        pages = [(name, path) for name, path in pages if self._opens(path)]
        for lang, button in LANGUAGES:
            if lang != "en":  # through the language selector, as a person would
                self.page.get_by_role("button", name=button, exact=True).click()
                expect(self.page.locator("html")).to_have_attribute("lang", lang)
                self.problems += [f"language switch: {c}" for c in self.complaints.take()]
            for name, path in pages:
                self._check(path, name, lang)
            self.page.set_viewport_size(PHONE)
            for name, path in pages:
                self._check(path, f"{name}-phone", lang, phone=True)
            self.page.set_viewport_size(DESKTOP)

    def _opens(self, path: str) -> bool:
        """Whether `path` is an HTML page to look at (not POST-only, not a download)."""
        response = self.page.request.get(self.base + path, max_redirects=0)
        if response.status == 405:
            return False
        if response.status != 200:
            self.problems.append(f"{path}: HTTP {response.status}")
            return False
        return response.headers.get("content-type", "").startswith("text/html")

    def _check(self, path: str, name: str, lang: str, *, phone: bool = False) -> None:
        page = self.page
        response = page.goto(self.base + path)
        label = f"{path} [{lang}{' phone' if phone else ''}]"
        self.visited += 1
        self.problems += [f"{label}: {c}" for c in self.complaints.take()]
        if response is None or response.status != 200:
            self.problems.append(f"{label}: HTTP {response.status if response else None}")
            return
        html_lang = page.locator("html").get_attribute("lang")
        if html_lang != lang:
            self.problems.append(f"{label}: <html lang={html_lang!r}>")
        self.problems += [f"{label}: axe {v}" for v in serious_violations(page)]
        if lang != "en":
            self.problems += [f"{label}: untranslated {t}" for t in untranslated(page, self.data)]
        if not phone:
            self._check_figures(path, label, lang)
        if phone and (overflow := horizontal_overflow(page)):
            self.problems.append(f"{label}: {overflow}px wider than a phone")
        page.screenshot(path=str(self.shots / f"{name}-{lang}.png"), full_page=True)

    def _check_figures(self, path: str, label: str, lang: str) -> None:
        """Numbers are written by one rule in every language: grouped by three, and the
        same figures on a page whatever its language."""
        text = page_text(self.page)
        self.problems += [f"{label}: figure not grouped: {f!r}" for f in ungrouped_figures(text)]
        if lang == "en":
            self.figures[path] = figures(text)
        elif path in self.figures and figures(text) != self.figures[path]:
            self.problems.append(
                f"{label}: figures differ from English: {figures(text)} != {self.figures[path]}"
            )


def test_every_page_in_both_languages(
    live_server: Any, browser: Browser, harbour: Harbour, shots: Path
) -> None:
    now = timezone.now()
    paid = TopUp.objects.filter(account=harbour.prepaid, status=TopUp.Status.SUCCEEDED).first()
    assert paid is not None
    created, _new = topup_create(
        account=harbour.prepaid, amount=250_00, idempotency_key="walk", actor=SYSTEM, as_of=now
    )
    pending, _checkout = topup_checkout_start(topup=created, actor=SYSTEM, as_of=now)
    # PDFs are downloads, and slow to render: tests/browser/test_resident.py fetches one.
    routes = [
        r
        for r in tenant_routes({"account_id", "org_id", "bill_id", "topup_id"})
        if not r.route.endswith("pdf/")
    ]
    assert set(SLUGS) - {r.name for r in routes} == set(), "a main page is missing"
    paths = [(slug(r), _url(r, _kwargs(r, harbour, pending, paid)), r.tenant) for r in routes]
    walks = [
        (
            harbour.resident.email,
            [(name, path) for name, path, tenant in paths if tenant == "account"]
            + [("home", "/"), ("dashboard-postpaid", f"/a/{harbour.postpaid.public_id}/")],
        ),
        (
            harbour.group_manager.email,
            [(name, path) for name, path, tenant in paths if tenant == "organisation"],
        ),
    ]
    # Names are data in every language: the site's, and the payee and bank a bill asks to pay.
    payment = [str(settings.BILLING_PAYEE_NAME), settings.BILLING_BANK_NAME]
    data = [str(settings.PORTAL_SITE_NAME), *payment, *harbour.data_texts()]
    problems: list[str] = []
    visited = 0
    # The server's clock stands still during the walk: a page read in English and again in
    # Chinese must show the same figures, and "so far" figures (the month to this hour, the
    # quarter hours up to now) would otherwise move between the two visits.
    with time_machine.travel(now, tick=False):
        for email, pages in walks:
            context = browser.new_context(viewport=DESKTOP)
            context.add_init_script(RECORD_CSP_VIOLATIONS)
            walk = Walk(context.new_page(), live_server.url, data, shots)
            try:
                walk.run(email, pages)
            finally:
                context.close()
            problems += walk.problems
            visited += walk.visited
    report = shots / "page-walk-problems.txt"
    report.write_text("".join(f"{p}\n" for p in problems))
    assert problems == [], f"{len(problems)} problems, also in {report}:\n" + "\n".join(problems)
    assert visited >= 4 * len(SLUGS)  # each main page in two languages at two widths
