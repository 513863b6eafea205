"""Every page of sign-in and account security (allauth), in English and then in Traditional
Chinese chosen through the language selector: it answers 200, says its language, has no serious
or critical axe violation, shows no untranslated English in Chinese and fits a phone without
sideways scrolling. Full-page screenshots go to SCREENSHOTS_DIR as allauth-<page>-<lang>.png.

The pages come from allauth's URLconf, so a page a new allauth version adds is walked without
being listed here. Each is opened by the first reader it is meant for: a visitor (signed out),
then a member without a second factor, then the same member once they have an authenticator app,
recovery codes and a security key. A page none of them opens is a failure, unless it is on the
reviewed SKIP list. The second-factor step of signing in, which needs a sign-in in progress, is
walked as part of signing in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.account.utils import user_pk_to_url_str
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.urls import resolve, reverse
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from portal.users.models import User
from tests.browser.axe import serious_violations
from tests.browser.pages import Route, horizontal_overflow, routes_of, untranslated
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LANGUAGES = (("en", "English"), ("zh-hant", "繁體中文"))
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
EMAIL = "member@example.com"
NEWCOMER = "newcomer@example.com"  # signed up, has not confirmed the address yet
KEY_NAME = "Office key"

# Pages no reader of this walk can open. DO NOT ADD without review: say why.
SKIP = {
    # Sign-in by emailed code is off (ACCOUNT_LOGIN_BY_CODE_ENABLED): nothing leads here.
    "account_confirm_login_code": "login by code is not enabled",
    # Only for people without a password (social sign-in); everyone here has one, and the
    # page sends them to "change password", which is walked.
    "account_set_password": "every login has a password",
}


def allauth_routes() -> list[Route]:
    """Every named page of allauth's URLconf (under /accounts/)."""
    return [r for r in routes_of(lambda view: view.startswith("allauth.")) if r.name not in SKIP]


def _kwargs(route: Route, member: User) -> dict[str, str] | None:
    """Values for the route's URL arguments, or None while there are none to give (a security
    key's pages before the key exists). An argument not known here fails the test."""
    if not route.kwargs:
        return {}
    if route.name == "account_confirm_email":
        address = EmailAddress.objects.get(email=NEWCOMER)
        return {"key": EmailConfirmationHMAC(address).key}
    if route.name == "account_reset_password_from_key":
        return {
            "uidb36": user_pk_to_url_str(member),
            "key": default_token_generator.make_token(member),
        }
    if route.kwargs == ["pk"] and "webauthn" in route.name:
        key = Authenticator.objects.filter(user=member, type=Authenticator.Type.WEBAUTHN).first()
        return {"pk": str(key.pk)} if key else None
    raise AssertionError(f"{route.name}: no value for {route.kwargs}; add one or a SKIP reason")


class Walk:
    """The readers' passes over the pages, in each language; problems are collected, so that
    one run shows all of them."""

    def __init__(self, base: str, shots: Path, data: Callable[[], list[str]]) -> None:
        self.base, self.shots, self.data = base, shots, data
        self.problems: list[str] = []
        self.walked: dict[str, str] = {}  # route name -> the first reader who opened it
        self.answers: dict[str, list[str]] = {}  # route name -> what each reader got

    def pages_for(
        self, page: Page, reader: str, routes: list[Route], member: User, *, again: bool = False
    ) -> None:
        """Walk, as `reader`, every route that opens for them and that no earlier reader
        opened (with `again`: also those an earlier member opened, which now show more)."""
        mine: list[tuple[Route, str]] = []
        for route in routes:
            earlier = self.walked.get(route.name)
            if earlier and not (again and earlier != "visitor"):
                continue
            if (kwargs := _kwargs(route, member)) is None:
                continue
            path = reverse(route.name, kwargs=kwargs)
            response = page.request.get(self.base + path)
            if response.status != 200 or not _same_route(response.url, route):
                where = urlsplit(response.url).path
                self.answers.setdefault(route.name, []).append(
                    f"{reader}: {response.status} {where}"
                )
                continue
            self.walked.setdefault(route.name, reader)
            # A file (the recovery codes) only has to answer; pages are looked at.
            if response.headers.get("content-type", "").startswith("text/html"):
                mine.append((route, path))
        suffix = "-again" if again else ""
        for lang, button in LANGUAGES:
            for n, (route, path) in enumerate(mine):
                label = f"{route.name} {path} [{lang}, {reader}]"
                shown = page.goto(self.base + path)
                if n == 0:
                    _choose_language(page, lang, button)
                if shown is None or shown.status != 200:
                    self.problems.append(f"{label}: HTTP {shown.status if shown else None}")
                    continue
                shot = f"allauth-{route.name.replace('_', '-')}{suffix}-{lang}"
                self.look(page, label, shot, lang)

    def look(self, page: Page, label: str, shot: str, lang: str) -> None:
        """Check the page now shown: its language, axe, English left over, width on a phone."""
        html_lang = page.locator("html").get_attribute("lang")
        if html_lang != lang:
            self.problems.append(f"{label}: <html lang={html_lang!r}>")
        self.problems += [f"{label}: axe {v}" for v in serious_violations(page)]
        if lang != "en":
            self.problems += [f"{label}: untranslated {t}" for t in untranslated(page, self.data())]
        page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)
        page.set_viewport_size(PHONE)
        if overflow := horizontal_overflow(page):
            self.problems.append(f"{label}: {overflow}px wider than a phone")
        page.set_viewport_size(DESKTOP)


def _same_route(url: str, route: Route) -> bool:
    """Whether `url` is a page of `route` (a reset link moves its key into the session)."""
    return resolve(urlsplit(url).path).url_name == route.name


def _choose_language(page: Page, lang: str, button: str) -> None:
    """Choose the language through the selector on the page, as a person would."""
    current = page.locator("html").get_attribute("lang")
    if current != lang:
        page.get_by_role("button", name=button, exact=True).click()
        expect(page.locator("html")).to_have_attribute("lang", lang)


def _sign_in(page: Page, base: str) -> None:
    """Sign in with the password (the form's labels in whatever language is chosen)."""
    page.goto(f"{base}/accounts/login/")
    page.locator("input[name=login]").fill(EMAIL)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form[action$='/accounts/login/'] [type=submit]").click()
    page.wait_for_load_state()


def _confirm_password(page: Page, base: str) -> None:
    """Confirm the password once, as the security pages ask before changes (allauth counts a
    sign-in as recent only after such a confirmation)."""
    page.goto(f"{base}/accounts/reauthenticate/")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form[action$='/accounts/reauthenticate/'] [type=submit]").click()
    page.wait_for_load_state()


def _add_security_key(page: Page, base: str) -> None:
    """Add a security key through the pages, with Chromium's virtual authenticator."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.goto(f"{base}/accounts/2fa/webauthn/add/")
    _choose_language(page, "en", "English")
    page.get_by_label("Name").fill(KEY_NAME)
    page.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)


@pytest.fixture
def member(transactional_db: None) -> User:
    newcomer = make_user(NEWCOMER)
    EmailAddress.objects.filter(user=newcomer).update(verified=False)
    return make_user(EMAIL)


@pytest.fixture
def context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    made: list[BrowserContext] = []

    def new() -> BrowserContext:
        made.append(browser.new_context(viewport=DESKTOP))
        return made[-1]

    yield new
    for item in made:
        item.close()


def test_every_allauth_page_in_both_languages(
    live_server: Any,
    context: Callable[[], BrowserContext],
    member: User,
    shots: Path,
    settings: Any,
) -> None:
    # A sign-in counts as recent for this long: long enough that no page of the walk asks for
    # the password again, however slow the machine.
    settings.ACCOUNT_REAUTHENTICATION_TIMEOUT = 24 * 3600
    # WebAuthn needs a domain as relying party id: localhost, not 127.0.0.1.
    base = live_server.url.replace("127.0.0.1", "localhost")
    routes = allauth_routes()
    assert len(routes) >= 20, [r.name for r in routes]

    def data() -> list[str]:
        texts = [
            EMAIL,
            NEWCOMER,
            KEY_NAME,
            str(settings.PORTAL_SITE_NAME),
            "127.0.0.1",
            "localhost",
        ]
        for authenticator in Authenticator.objects.filter(user=member):
            if authenticator.type == Authenticator.Type.RECOVERY_CODES:
                texts += RecoveryCodes(authenticator).get_unused_codes()
            if authenticator.type == Authenticator.Type.TOTP:
                texts.append(str(authenticator.data.get("secret", "")))
        return sorted(set(texts), key=len, reverse=True)

    walk = Walk(base, shots, data)
    visitor = context().new_page()
    walk.pages_for(visitor, "visitor", routes, member)

    page = context().new_page()
    _sign_in(page, base)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    _confirm_password(page, base)
    walk.pages_for(page, "member", routes, member)

    # Now with every kind of second factor: an authenticator app, recovery codes and a key.
    TOTP.activate(member, generate_totp_secret())
    RecoveryCodes.activate(member)
    _add_security_key(page, base)
    walk.pages_for(page, "member with two factors", routes, member, again=True)

    # The second step of signing in, in each language.
    for lang, button in LANGUAGES:
        signing_in = context().new_page()
        signing_in.goto(f"{base}/accounts/login/")
        _choose_language(signing_in, lang, button)
        _sign_in(signing_in, base)
        assert "/2fa/authenticate/" in signing_in.url, signing_in.url
        walk.look(
            signing_in, f"mfa_authenticate [{lang}]", f"allauth-mfa-authenticate-{lang}", lang
        )
        walk.walked["mfa_authenticate"] = "signing in"

    never = {
        name: walk.answers.get(name) for name in sorted({r.name for r in routes} - set(walk.walked))
    }
    report = shots / "allauth-walk-problems.txt"
    report.write_text("".join(f"{p}\n" for p in walk.problems))
    assert never == {}, f"no reader of the walk opens these (fix them or SKIP them): {never}"
    assert walk.problems == [], f"{len(walk.problems)} problems, also in {report}:\n" + "\n".join(
        walk.problems
    )
