"""Sign-in, rate limits and lockout (portal and admin), sessions, passwords and MFA."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (
    SECRET_SESSION_KEY,
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
)
from django.contrib.auth import get_user
from django.contrib.auth.password_validation import validate_password
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from django.urls import reverse

from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.users.models import StaffFactorApproval, User
from portal.users.selectors import staff_factor_confirmed
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


def _events(*, since: int = 0) -> list[str]:
    return [e.event_name for e in AuditLogEntry.objects.filter(id__gt=since).order_by("id")]


def _last_id() -> int:
    return AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _login(client: Client, email: str, password: str, path: str = LOGIN) -> int:
    response = client.post(path, {"login": email, "password": password})
    return response.status_code


def _signed_in(client: Client) -> bool:
    return get_user(client).is_authenticated


# --- sign-in and its audit ------------------------------------------------------------------


def test_sign_in_and_out_are_audited_with_the_client_address() -> None:
    user = make_user("alice@example.com")
    start = _last_id()
    client = Client(REMOTE_ADDR="198.51.100.4")
    assert _login(client, "alice@example.com", PASSWORD) == 302
    assert _signed_in(client)
    client.post(reverse("account_logout"))
    assert not _signed_in(client)
    assert _events(since=start) == ["auth.login", "auth.logout"]
    entry = AuditLogEntry.objects.get(id__gt=start, event_type=AuditEvent.LOGIN)
    assert (entry.actor_id, str(entry.ip_address)) == (user.pk, "198.51.100.4")
    assert entry.request_id is not None


def test_a_failed_sign_in_is_audited_without_the_password() -> None:
    make_user("alice@example.com")
    start = _last_id()
    client = Client()
    assert _login(client, "alice@example.com", "wrong-password-123") == 200
    assert not _signed_in(client)
    entry = AuditLogEntry.objects.get(id__gt=start)
    assert entry.event_name == "auth.login_failed"
    assert entry.data == {"identifier": "alice@example.com"}
    assert "wrong-password" not in str(entry.data)


def test_five_failures_lock_the_login_even_for_the_right_password() -> None:
    make_user("alice@example.com")
    client = Client()
    for _ in range(5):
        _login(client, "alice@example.com", "wrong-password-123")
    start = _last_id()
    response = client.post(LOGIN, {"login": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert not _signed_in(client)
    assert _events(since=start) == ["auth.login_rate_limited"]
    # Another client, another address: the lockout is per account, not per browser.
    other = Client(REMOTE_ADDR="203.0.113.9")
    assert _login(other, "alice@example.com", PASSWORD) == 200
    assert not _signed_in(other)


def test_the_lockout_ends_when_the_window_passes() -> None:
    make_user("alice@example.com")
    with time_machine.travel(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC), tick=False) as clock:
        client = Client()
        for _ in range(5):
            _login(client, "alice@example.com", "wrong-password-123")
        assert _login(client, "alice@example.com", PASSWORD) == 200
        clock.shift(dt.timedelta(minutes=16))
        assert _login(client, "alice@example.com", PASSWORD) == 302


def test_the_admin_login_never_checks_a_password_itself() -> None:
    make_user("staff@example.com", staff=True)
    client = Client()
    response = client.get("/admin/")
    assert response.status_code == 302
    response = client.get(response["Location"])
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    # Posting credentials straight to the admin login signs nobody in.
    response = client.post("/admin/login/", {"username": "staff@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    assert not _signed_in(client)


def test_the_lockout_covers_staff_signing_in_for_the_admin() -> None:
    make_user("staff@example.com", staff=True)
    client = Client()
    for _ in range(5):
        _login(client, "staff@example.com", "wrong-password-123", path=f"{LOGIN}?next=/admin/")
    assert _login(client, "staff@example.com", PASSWORD, path=f"{LOGIN}?next=/admin/") == 200
    assert not _signed_in(client)
    assert client.get("/admin/").status_code == 302


def test_staff_sign_in_with_password_and_second_factor_reaches_the_admin() -> None:
    staff = make_user("staff@example.com", staff=True)
    secret = generate_totp_secret()
    TOTP.activate(staff, secret)
    client = Client()
    response = client.post(
        f"{LOGIN}?next=/admin/", {"login": "staff@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert "/2fa/authenticate" in response["Location"]
    assert client.get("/admin/").status_code == 302  # not yet: the second factor is missing
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    response = client.post(response["Location"], {"code": code})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@override_settings(PORTAL_STAFF_REQUIRE_MFA=True)
def test_staff_without_a_second_factor_are_sent_to_enrol_one() -> None:
    staff = make_user("staff@example.com", staff=True)
    client = Client()
    client.force_login(staff)
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == reverse("mfa_index")
    TOTP.activate(staff, generate_totp_secret())
    assert client.get("/admin/").status_code == 200


def test_a_member_without_staff_status_cannot_open_the_admin() -> None:
    client = Client()
    client.force_login(make_user())
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403


# --- sessions -------------------------------------------------------------------------------


def test_a_session_ends_after_30_idle_minutes() -> None:
    user = make_user()
    start = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        client = Client()
        client.force_login(user)
        home = reverse("tenancy:home")
        assert client.get(home).status_code == 200
        clock.shift(dt.timedelta(minutes=29))
        assert client.get(home).status_code == 200  # activity keeps it alive
        clock.shift(dt.timedelta(minutes=29))
        assert client.get(home).status_code == 200
        before = _last_id()
        clock.shift(dt.timedelta(minutes=31))
        response = client.get(home)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        entry = AuditLogEntry.objects.get(id__gt=before)
        assert (entry.event_name, entry.data) == ("auth.session_expired", {"reason": "idle"})
        page = client.get(response["Location"])
        assert "Your session ended" in page.content.decode()


def test_background_polling_does_not_keep_a_session_alive() -> None:
    user = make_user()
    start = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        client = Client()
        client.force_login(user)
        home = reverse("tenancy:home")
        assert client.get(home).status_code == 200
        for _ in range(4):
            clock.shift(dt.timedelta(minutes=9))
            client.get(home, headers={"X-Portal-Passive": "1"})
        assert client.get(home).status_code == 302  # 36 idle minutes, polling or not


def test_a_session_ends_12_hours_after_sign_in_however_active() -> None:
    user = make_user()
    start = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        client = Client()
        client.force_login(user)
        home = reverse("tenancy:home")
        for _ in range(int(12 * 60 / 20) - 1):
            assert client.get(home).status_code == 200
            clock.shift(dt.timedelta(minutes=20))
        assert client.get(home).status_code == 200
        clock.shift(dt.timedelta(minutes=20))
        response = client.get(home)
        assert response.status_code == 302
        entry = AuditLogEntry.objects.order_by("-id").first()
        assert entry is not None and entry.data == {"reason": "absolute"}


def test_session_cookies_are_http_only_and_lax() -> None:
    make_user("alice@example.com")
    client = Client()
    _login(client, "alice@example.com", PASSWORD)
    cookie = client.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


# --- passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short-pw-1", "too short"),
        ("x" * 129, "too long"),
        ("password1234", "too common"),
        ("123456789012345", "entirely numeric"),
        ("alice.liddell@example.com", "too similar"),
    ],
)
def test_weak_passwords_are_refused(password: str, message: str) -> None:
    user = User(email="alice.liddell@example.com", name="Alice Liddell")
    with pytest.raises(ValidationError, match=message):
        validate_password(password, user)


@pytest.mark.parametrize("password", ["a-sound-passphrase", "x7!" * 40 + "abcdefgh"])
def test_passwords_of_12_to_128_characters_are_accepted(password: str) -> None:
    assert len(password) <= 128
    validate_password(password, User(email="someone@example.com"))


def test_changing_the_password_is_audited() -> None:
    user = make_user("alice@example.com")
    client = Client()
    client.force_login(user)
    start = _last_id()
    response = client.post(
        reverse("account_change_password"),
        {
            "oldpassword": PASSWORD,
            "password1": "a-new-long-passphrase",
            "password2": "a-new-long-passphrase",
        },
    )
    assert response.status_code == 302
    assert "auth.password_change" in _events(since=start)


def test_signing_up_is_audited_and_sends_a_verification_email() -> None:
    start = _last_id()
    client = Client()
    response = client.post(
        reverse("account_signup"),
        {
            "email": "new@example.com",
            "password1": "a-sound-passphrase",
            "password2": "a-sound-passphrase",
        },
    )
    assert response.status_code == 302
    assert "auth.signup" in _events(since=start)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new@example.com"]
    # Email verification is mandatory: no session until the address is confirmed.
    assert not _signed_in(client)


# --- second factor --------------------------------------------------------------------------


def test_activating_totp_is_audited(django_capture_on_commit_callbacks: Any) -> None:
    user = make_user("alice@example.com")
    client = Client()
    assert _login(client, "alice@example.com", PASSWORD) == 302
    activate = reverse("mfa_activate_totp")
    # allauth asks for the password again before a second factor is added.
    response = client.get(activate)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_reauthenticate"))
    client.post(response["Location"], {"password": PASSWORD})
    assert client.get(activate).status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    start = _last_id()
    # allauth announces the new authenticator once its transaction has committed.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(activate, {"code": code})
    assert response.status_code == 302, response.content.decode()[:500]
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    added = AuditLogEntry.objects.filter(
        id__gt=start, event_type=AuditEvent.MFA_AUTHENTICATOR_ADDED
    )
    assert {e.data["kind"] for e in added} >= {"totp"}


def test_a_wrong_second_factor_code_is_audited() -> None:
    user = make_user("alice@example.com")
    TOTP.activate(user, generate_totp_secret())
    client = Client()
    response = client.post(LOGIN, {"login": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert re.search(r"/2fa/authenticate", response["Location"])
    start = _last_id()
    client.post(response["Location"], {"code": "000000"})
    assert not _signed_in(client)
    assert "auth.mfa_failed" in _events(since=start)


def test_a_password_reset_by_email_is_audited() -> None:
    make_user("alice@example.com")
    client = Client()
    client.post(reverse("account_reset_password"), {"email": "alice@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(
        r"http://testserver(/accounts/password/reset/key/\S+)", str(mail.outbox[0].body)
    )
    assert link is not None
    response = client.get(link.group(1))
    assert response.status_code == 302  # allauth hides the key behind a session redirect
    form_url = response["Location"]
    start = _last_id()
    response = client.post(
        form_url, {"password1": "another-long-passphrase", "password2": "another-long-passphrase"}
    )
    assert response.status_code == 302
    assert "auth.password_reset" in _events(since=start)
    assert _login(Client(), "alice@example.com", "another-long-passphrase") == 302


def test_an_unknown_address_gets_the_same_answer_as_a_known_one() -> None:
    make_user("alice@example.com")
    known = Client().post(reverse("account_reset_password"), {"email": "alice@example.com"})
    unknown = Client().post(reverse("account_reset_password"), {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]


def _enrol_totp(client: Client, captured: Any) -> None:
    activate = reverse("mfa_activate_totp")
    response = client.get(activate)
    if response.status_code == 302:
        client.post(response["Location"], {"password": PASSWORD})
    assert client.get(activate).status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    with captured(execute=True):
        assert client.post(activate, {"code": code}).status_code == 302


def test_a_staff_members_first_factor_opens_the_admin_only_once_confirmed_by_email(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    # Issue 12, finding 4: whoever held a staff password could add an authenticator and be
    # in the admin. The first factor now counts only once the emailed link is confirmed.
    settings.PORTAL_STAFF_REQUIRE_MFA = True
    staff = make_user("ops@example.com")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    client = Client()
    assert _login(client, "ops@example.com", PASSWORD) == 302
    mail.outbox.clear()
    start = _last_id()
    _enrol_totp(client, django_capture_on_commit_callbacks)
    assert "auth.staff_factor_held" in _events(since=start)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302  # to the login, which sends staff on to the MFA page
    assert client.get(response["Location"])["Location"] == reverse("mfa_index")
    (letter,) = [m for m in mail.outbox if "staff-factor" in m.body]
    assert letter.to == ["ops@example.com"]
    link = re.search(r"https?://\S+(/account/staff-factor/\S+/)", str(letter.body))
    assert link is not None
    # Someone else, signed in, cannot confirm it.
    intruder = make_user("other@example.com")
    other = Client()
    other.force_login(intruder)
    assert other.post(link.group(1)).status_code == 404
    # The staff member can, once.
    assert client.get(link.group(1)).status_code == 200
    assert client.post(link.group(1)).status_code == 302
    assert "auth.staff_factor_confirmed" in _events(since=start)
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.post(link.group(1)).status_code == 404


def test_a_residents_factor_and_a_staff_members_second_factor_need_no_confirmation(
    django_capture_on_commit_callbacks: Any,
) -> None:
    resident = make_user("resident@example.com")
    client = Client()
    assert _login(client, "resident@example.com", PASSWORD) == 302
    _enrol_totp(client, django_capture_on_commit_callbacks)
    assert not StaffFactorApproval.objects.filter(user=resident).exists()
    # Staff with a factor already (enrolled before confirmations existed) are not held.
    staff = make_user("ops2@example.com")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    TOTP.activate(staff, generate_totp_secret())
    assert staff_factor_confirmed(user=staff)
