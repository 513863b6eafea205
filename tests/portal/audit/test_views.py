"""The audit log pages show a tenant's own entries to members with audit:read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from portal.tenancy.models import Membership
from portal.tenancy.roles import Role
from portal.tenancy.services.members import membership_change_role
from portal.tenancy.services.organisations import organisation_update
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db
ClientFor = Callable[[User], Client]


def test_an_account_log_shows_only_that_accounts_entries(
    world: World, client_for: ClientFor
) -> None:
    bob = Membership.objects.get(user=world.bob, account=world.account_a)
    membership_change_role(membership=bob, role=Role.PAYER, actor=SYSTEM)
    body = (
        client_for(world.alice)
        .get(reverse("audit:account_log", args=[world.account_a.public_id]))
        .content.decode()
    )
    assert "changed the role of bob@example.com from Viewer to Payer" in body
    assert "Time (Asia/Taipei)" in body  # shown in the account's zone
    assert "charlie@example.com" not in body  # account B's entries


def test_an_organisation_log_covers_its_subtree_but_not_its_siblings(
    world: World, client_for: ClientFor
) -> None:
    organisation_update(organisation=world.sub1, changes={"name": "Sub One"}, actor=SYSTEM)
    organisation_update(organisation=world.sub2, changes={"name": "Sub Two"}, actor=SYSTEM)
    group_log = (
        client_for(world.group_manager)
        .get(reverse("audit:organisation_log", args=[world.group.public_id]))
        .content.decode()
    )
    assert "Sub One" in group_log and "Sub Two" in group_log
    sub1_log = (
        client_for(world.sub1_manager)
        .get(reverse("audit:organisation_log", args=[world.sub1.public_id]))
        .content.decode()
    )
    assert "Sub One" in sub1_log and "Sub Two" not in sub1_log
    assert "Acc 1" in sub1_log  # the account created beneath sub1


def test_the_log_filters_by_event(world: World, client_for: ClientFor) -> None:
    url = reverse("audit:account_log", args=[world.account_a.public_id])
    body = client_for(world.alice).get(url, {"event": "account.create"}).content.decode()
    assert "created account" in body and "added bob@example.com" not in body
    for since in ("not-a-date", "2026-13-45"):
        response = client_for(world.alice).get(url, {"event": "nonsense", "since": since})
        assert response.status_code == 200


def test_viewers_and_payers_cannot_read_the_log(world: World, client_for: ClientFor) -> None:
    url = reverse("audit:account_log", args=[world.account_a.public_id])
    assert client_for(world.bob).get(url).status_code == 403
    assert client_for(world.pat).get(url).status_code == 403
    assert client_for(world.max).get(url).status_code == 200
