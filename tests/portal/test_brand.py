"""The brand is one name, translated the same way on the portal and in the admin (and kept as
configured when a deployment names itself with PORTAL_SITE_NAME)."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.test import Client

from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _pages(language: str, world: World) -> tuple[str, str]:
    """The portal's home (as a resident) and the admin's index (as staff), in `language`."""
    resident = Client(HTTP_ACCEPT_LANGUAGE=language)
    resident.force_login(world.alice)
    staff_user = make_user(f"staff.{language}@utility.example", staff=True)
    TOTP.activate(staff_user, generate_totp_secret())
    staff = Client(HTTP_ACCEPT_LANGUAGE=language)
    staff.force_login(staff_user)
    return resident.get("/").content.decode(), staff.get("/admin/").content.decode()


@pytest.mark.parametrize(
    ("language", "brand", "other"),
    [
        ("en", "Smart Meter Portal", "智慧電表入口網站"),
        ("zh-hant", "智慧電表入口網站", "Smart Meter Portal"),
    ],
)
def test_the_portal_and_the_admin_show_the_brand_in_the_same_language(
    world: World, language: str, brand: str, other: str
) -> None:
    portal, admin = _pages(language, world)
    assert f'class="navbar-brand" href="/">{brand}</a>' in portal
    assert f"· {brand}</title>" in portal
    assert f">{brand} · " in admin  # the admin's header: "<brand> · staff"
    assert other not in portal and other not in admin


def test_a_configured_name_is_shown_as_configured(world: World, settings: Any) -> None:
    settings.PORTAL_SITE_NAME = "Harbour Energy"
    portal, admin = _pages("zh-hant", world)
    assert 'class="navbar-brand" href="/">Harbour Energy</a>' in portal
    assert ">Harbour Energy · " in admin
