"""The "Login and security" pages that allauth renders with template tags of other apps
(`naturaltime`) answer, in both languages; the whole walk is tests/browser/test_allauth_pages.py."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"


@pytest.mark.parametrize(("language", "heading"), [("en", "Sessions"), ("zh-hant", "工作階段")])
def test_the_session_list_answers_with_the_browser_as_data(language: str, heading: str) -> None:
    make_user("resident@example.com")
    client = Client(HTTP_USER_AGENT=BROWSER, HTTP_ACCEPT_LANGUAGE=language)
    client.post(reverse("account_login"), {"login": "resident@example.com", "password": PASSWORD})
    response = client.get(reverse("usersessions_list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f">{heading}</h1>" in html
    # The user-agent string is the browser's own text: marked so that nobody translates it.
    assert f'translate="no">{BROWSER}</td>' in html


def test_the_security_key_list_answers_with_a_key() -> None:
    user = make_user("keyholder@example.com")
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.WEBAUTHN, data={"name": "Office key", "credential": {}}
    )
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hant")
    client.force_login(user)
    response = client.get(reverse("mfa_list_webauthn"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Office key" in html
    assert "尚未使用。" in html
