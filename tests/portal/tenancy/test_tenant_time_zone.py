"""Every time a person sees is in the tenant's zone: the account's on account pages, the
organisation's on organisation pages, written the way each language writes it.

The scoped base views make the zone current for the whole response (HTML and API), so these
pages, which once showed UTC, show local time; and the zone is the site's again afterwards.
A top-up paid at 05:25 UTC is 13:25 in Taipei.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import TopUp
from billing.services.ledger import wallet_create
from billing.services.topups import topup_create, topup_settle_paid
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Organisation
from portal.tenancy.roles import Role
from portal.tenancy.services.invitations import invitation_create, invitation_email_send
from portal.tenancy.services.organisations import organisation_update
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_organisation, make_user

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User], Client]
TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")
PAID = dt.datetime(2026, 12, 3, 5, 25, tzinfo=dt.UTC)  # 13:25 in Taipei, 05:25 in UTC
# What each language writes for that instant in Taipei (portal/formats); tables on narrow
# screens put the time after the day without the comma.
LOCAL = {"en": r"3 Dec 2026,? 13:25", "zh-hant": r"2026年12月3日 13:25"}
LANGUAGES = sorted(LOCAL)


def _in(client: Client, language: str) -> Client:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client


def _paid_topup(world: World) -> TopUp:
    wallet_create(account=world.account_a, actor=SYSTEM)
    topup, _new = topup_create(
        account=world.account_a, amount=500_00, idempotency_key="t", actor=SYSTEM, as_of=PAID
    )
    topup_settle_paid(
        topup_id=topup.pk,
        provider_ref="ref-1",
        amount=500_00,
        currency="TWD",
        actor=SYSTEM,
        as_of=PAID,
    )
    return topup


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _shows_local_not_utc(html: str, language: str) -> None:
    text = _text(html)
    assert re.search(LOCAL[language], text), text
    assert "05:25" not in text  # the same instant in UTC
    assert "Asia/Taipei" in text  # the zone is named


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_wallet_shows_movements_in_the_accounts_zone(
    world: World, client_for: ClientFor, language: str
) -> None:
    _paid_topup(world)
    url = reverse("billing:account_wallet", args=[world.account_a.public_id])
    _shows_local_not_utc(_in(client_for(world.alice), language).get(url).content.decode(), language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_top_up_list_and_receipt_show_the_accounts_zone(
    world: World, client_for: ClientFor, language: str
) -> None:
    topup = _paid_topup(world)
    client = _in(client_for(world.alice), language)
    listing = client.get(reverse("billing:topup", args=[world.account_a.public_id]))
    _shows_local_not_utc(listing.content.decode(), language)
    receipt = client.get(
        reverse("billing:topup_receipt", args=[world.account_a.public_id, topup.public_id])
    )
    _shows_local_not_utc(receipt.content.decode(), language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_invitation_expiry_is_in_the_organisations_zone(
    world: World, client_for: ClientFor, language: str
) -> None:
    organisation_update(
        organisation=world.group, changes={"time_zone": "Asia/Taipei"}, actor=SYSTEM
    )
    invitation = invitation_create(
        email="later@example.com",
        role=Role.VIEWER,
        organisation=world.group,
        actor=SYSTEM,
        as_of=dt.datetime(2099, 1, 1, 5, 25, tzinfo=dt.UTC),
    )
    local = invitation.expires_at.astimezone(TAIPEI)
    assert local.hour != invitation.expires_at.hour
    url = reverse("tenancy:organisation_members", args=[world.group.public_id])
    html = _in(client_for(world.group_manager), language).get(url).content.decode()
    written = {
        "en": f"{local.day} {local:%b %Y}, {local:%H:%M}",
        "zh-hant": f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}",
    }
    assert written[language] in html
    assert f"{invitation.expires_at:%H:%M}" not in html
    assert "Asia/Taipei" in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_organisation_audit_log_is_in_the_organisations_zone(
    world: World, client_for: ClientFor, language: str
) -> None:
    organisation_update(
        organisation=world.group, changes={"time_zone": "Asia/Taipei"}, actor=SYSTEM
    )
    organisation_update(organisation=world.group, changes={"name": "Group Two"}, actor=SYSTEM)
    entry = AuditLogEntry.objects.filter(organisation=world.group).order_by("-id").first()
    assert entry is not None
    local = entry.created_at.astimezone(TAIPEI)
    url = reverse("audit:organisation_log", args=[world.group.public_id])
    html = _in(client_for(world.group_manager), language).get(url).content.decode()
    written = {
        "en": f"{local.day} {local:%b %Y} {local:%H:%M:%S}",
        "zh-hant": f"{local.year}年{local.month}月{local.day}日 {local:%H:%M:%S}",
    }
    assert written[language] in html
    assert f"{entry.created_at:%H:%M:%S}" not in html  # UTC, as it was
    assert "Asia/Taipei" in html


def test_the_api_writes_times_with_the_accounts_offset(world: World, client_for: ClientFor) -> None:
    _paid_topup(world)
    url = reverse("billing:api_topups", args=[world.account_a.public_id])
    body = client_for(world.alice).get(url).json()
    rows = body["results"] if isinstance(body, dict) else body
    assert rows[0]["created_at"] == "2026-12-03T13:25:00+08:00"


def test_a_subsidiary_takes_its_groups_zone_and_a_group_the_sites() -> None:
    group = make_organisation("Zone group")
    assert group.time_zone == settings.TIME_ZONE
    organisation_update(organisation=group, changes={"time_zone": "Asia/Tokyo"}, actor=SYSTEM)
    assert make_organisation("Zone sub", parent=group).time_zone == "Asia/Tokyo"
    assert Organisation.objects.get(pk=group.pk).time_zone == "Asia/Tokyo"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_invitation_email_gives_the_expiry_in_the_tenants_zone(
    world: World, mailoutbox: list[Any], language: str
) -> None:
    invitation = invitation_create(
        email="later@example.com",
        role=Role.VIEWER,
        account=world.account_a,
        actor=SYSTEM,
        language=language,
        as_of=dt.datetime(2099, 1, 1, 5, 25, tzinfo=dt.UTC),
    )
    assert invitation_email_send(
        invitation=invitation, base_url="https://portal.example", as_of=timezone.now()
    )
    local = invitation.expires_at.astimezone(TAIPEI)
    written = {
        "en": f"{local.day} {local:%B %Y}, {local:%H:%M} (Asia/Taipei)",
        # Full-width brackets, as Chinese text writes them.
        "zh-hant": f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
        "\uff08Asia/Taipei 時區\uff09",
    }
    assert written[language] in mailoutbox[-1].body


def test_staff_set_an_organisations_zone_in_the_admin() -> None:
    staff = make_user("root@example.com", staff=True)
    TOTP.activate(staff, generate_totp_secret())
    client = Client()
    client.force_login(staff)
    group = make_organisation("Admin group")
    organisation_update(organisation=group, changes={"time_zone": "Asia/Tokyo"}, actor=SYSTEM)
    # Left empty, a new subsidiary takes its parent's zone.
    response = client.post(
        "/admin/tenancy/organisation/add/", {"name": "Admin sub", "parent": group.pk}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    sub = Organisation.objects.get(name="Admin sub")
    assert sub.time_zone == "Asia/Tokyo"
    response = client.post(
        f"/admin/tenancy/organisation/{sub.pk}/change/",
        {"name": "Admin sub", "parent": group.pk, "time_zone": "Asia/Taipei"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    sub.refresh_from_db()
    assert sub.time_zone == "Asia/Taipei"
    changed = AuditLogEntry.objects.filter(organisation=sub).order_by("-id").first()
    assert changed is not None and "time_zone" in changed.data["changes"]
    response = client.post(
        f"/admin/tenancy/organisation/{sub.pk}/change/",
        {"name": "Admin sub", "parent": group.pk, "time_zone": "Mars/Olympus"},
    )
    assert response.status_code == 200  # refused: not a zone
    sub.refresh_from_db()
    assert sub.time_zone == "Asia/Taipei"


@pytest.mark.parametrize(
    "path",
    [
        "billing:account_wallet",  # a page
        "billing:api_topups",  # an API answer
        "billing:account_bill",  # a page that raises 404 inside the view
    ],
)
def test_the_tenants_zone_ends_with_its_response(
    world: World, client_for: ClientFor, path: str
) -> None:
    """The zone is current for one response only: the test client runs the view in this
    thread, where a zone left active would show the next request's times in it."""
    _paid_topup(world)
    args: list[object] = [world.account_a.public_id]
    if path == "billing:account_bill":
        args.append("00000000-0000-0000-0000-000000000000")
    assert timezone.get_current_timezone_name() == settings.TIME_ZONE
    client_for(world.alice).get(reverse(path, args=args))
    assert timezone.get_current_timezone_name() == settings.TIME_ZONE
