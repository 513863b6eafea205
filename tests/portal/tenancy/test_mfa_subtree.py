"""A subsidiary's "require two-factor authentication" holds on the group's pages too (issue 12,
finding 1): a group manager without a second factor read that subsidiary's accounts, CSV and
audit entries through the group's pages and the API. Every page and endpoint over a subtree
now leaves out what is beneath such a subsidiary, and says so."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.test import Client
from django.urls import reverse
from django.utils import translation

from portal.tenancy.roles import Role
from portal.tenancy.services.organisations import organisation_update
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_account, make_membership, make_organisation, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def guarded(world: World) -> World:
    """Sub 1 asks for a second factor; beneath it a team with an account of its own."""
    organisation_update(organisation=world.sub1, changes={"require_mfa": True}, actor=SYSTEM)
    team = make_organisation("Sub 1 Team", parent=world.sub1)
    make_account("Team Acc", organisation=team)
    return world


def _pages(world: World) -> dict[str, str]:
    group = world.group.public_id
    return {
        "home": reverse("tenancy:organisation_home", args=[group]),
        "accounts": reverse("web:organisation_accounts", args=[group]),
        "csv": reverse("web:organisation_accounts_csv", args=[group]),
        "subsidiary": reverse("web:organisation_accounts", args=[group])
        + f"?subsidiary={world.sub1.public_id}",
        "audit": reverse("audit:organisation_log", args=[group]),
        "api": reverse("tenancy:api_organisation_accounts", args=[group]),
        "detail": reverse("tenancy:api_organisation_detail", args=[group]),
    }


def _body(client: Client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, url
    if response.streaming:
        return b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return response.content.decode()


def _seen(client: Client, world: World, *, withheld: bool) -> dict[str, str]:
    # Filtering on a withheld subsidiary is refused like any subsidiary not in the tree.
    return {
        name: _body(client, url, 400 if withheld and name == "subsidiary" else 200)
        for name, url in _pages(world).items()
    }


def test_a_group_manager_without_mfa_sees_nothing_of_a_guarded_subsidiary(
    guarded: World, client_for: Callable[[User], Client]
) -> None:
    world = guarded
    client = client_for(world.group_manager)
    seen = _seen(client, world, withheld=True)
    for name, body in seen.items():
        assert "Acc 1" not in body, name
        assert "Team Acc" not in body, name
        assert str(world.acc1.number) not in body, name
    # What is not guarded is still there.
    assert "Acc 2" in seen["accounts"] and "Acc 2" in seen["csv"] and "Acc 2" in seen["api"]
    # And the pages say why.
    for name in ("home", "accounts", "audit"):
        assert 'id="mfa-withheld"' in seen[name] and "Sub 1" in seen[name], name
    api = client.get(_pages(world)["api"])
    assert api["X-Withheld-Organisations"] == str(world.sub1.public_id)
    assert "Sub 1" not in seen["detail"]
    with translation.override("zh-hant"):
        zh = client.get(_pages(world)["accounts"], HTTP_ACCEPT_LANGUAGE="zh-hant")
    assert "雙重驗證" in zh.content.decode()


def test_with_a_second_factor_or_as_a_viewer_everything_is_shown(
    guarded: World, client_for: Callable[[User], Client]
) -> None:
    world = guarded
    TOTP.activate(world.group_manager, generate_totp_secret())
    seen = _seen(client_for(world.group_manager), world, withheld=False)
    assert "Acc 1" in seen["accounts"] and "Team Acc" in seen["csv"] and "Acc 1" in seen["api"]
    assert 'id="mfa-withheld"' not in seen["accounts"]
    # A viewer of the group is not asked for a second factor anywhere.
    viewer = make_user("group.viewer@example.com")
    make_membership(viewer, Role.VIEWER, organisation=world.group)
    client = client_for(viewer)
    body = client.get(_pages(world)["accounts"]).content.decode()
    assert "Acc 1" in body and 'id="mfa-withheld"' not in body


def test_a_manager_of_the_guarded_subsidiary_itself_is_still_sent_to_set_up_mfa(
    guarded: World, client_for: Callable[[User], Client]
) -> None:
    world = guarded
    response = client_for(world.group_manager).get(
        reverse("web:organisation_accounts", args=[world.sub1.public_id])
    )
    assert response.status_code == 302 and response["Location"] == reverse("mfa_index")


def test_the_csv_files_say_what_they_leave_out(
    guarded: World, client_for: Callable[[User], Client]
) -> None:
    # A file has no banner: its headers say it, as the API's do (found by `make verify`).
    world = guarded
    group = world.group.public_id
    files = [
        reverse("web:organisation_accounts_csv", args=[group]),
        reverse("audit:organisation_log_csv", args=[group]),
    ]
    client = client_for(world.group_manager)
    for url in files:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["X-Withheld-Organisations"] == str(world.sub1.public_id), url
        assert response["X-Withheld-Reason"] == "two-factor authentication required", url
    TOTP.activate(world.group_manager, generate_totp_secret())
    for url in files:
        assert "X-Withheld-Organisations" not in client.get(url), url
