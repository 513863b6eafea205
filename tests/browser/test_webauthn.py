"""WebAuthn as a second factor, with Chromium's virtual authenticator standing in for a key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from playwright.sync_api import Browser, Page, expect

from portal.audit.models import AuditLogEntry
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page_with_key(browser: Browser) -> Iterator[Page]:
    page = browser.new_page()
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
    yield page
    page.close()


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()


def test_a_security_key_is_added_and_then_required_at_sign_in(
    live_server: Any, page_with_key: Page, transactional_db: None
) -> None:
    # WebAuthn needs a domain as relying party id: localhost, not 127.0.0.1.
    base = live_server.url.replace("127.0.0.1", "localhost")
    user = make_user("keyholder@example.com")
    page = page_with_key
    _sign_in(page, base, "keyholder@example.com")
    expect(page.get_by_role("heading", name="My accounts")).to_be_visible()

    page.goto(f"{base}/accounts/2fa/webauthn/add/")
    if "/reauthenticate/" in page.url:  # allauth asks for the password again first
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
    page.get_by_label("Name").fill("Virtual key")
    page.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.WEBAUTHN).exists()
    assert AuditLogEntry.objects.filter(
        event_type=930, actor_id=user.pk, data__kind="webauthn"
    ).exists()

    page.get_by_role("button", name="Sign out").click()
    _sign_in(page, base, "keyholder@example.com")
    expect(page.get_by_role("heading", name="Two-Factor Authentication")).to_be_visible()
    page.get_by_role("button", name="Use a security key").click()
    expect(page.get_by_role("heading", name="My accounts")).to_be_visible()
