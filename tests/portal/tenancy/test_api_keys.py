"""Organisation API keys: made by managers, shown once, stored hashed, revoked for good."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.exceptions import ApiKeyManagementDenied
from portal.tenancy.models import Membership, OrganisationAPIKey
from portal.tenancy.roles import Role
from portal.tenancy.selectors import api_key_access, organisation_access_for
from portal.tenancy.services.api_keys import api_key_create, api_key_revoke
from portal.tenancy.services.members import membership_change_role
from portal.tenancy.tokens import api_key_hash
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db


def _keys_url(world: World) -> str:
    return reverse("tenancy:organisation_api_keys", kwargs={"org_id": world.group.public_id})


def test_a_manager_creates_a_key_that_is_shown_once_and_stored_hashed(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.group_manager)
    response = client.post(_keys_url(world), {"name": "North head-end"}, follow=True)
    assert response.redirect_chain == [(_keys_url(world), 302)]
    assert response["Cache-Control"] == "no-store"
    api_key = OrganisationAPIKey.objects.get()
    key = response.context["new_key"]
    assert key.startswith(f"smk_{api_key.prefix}_") and len(key) > 50
    assert key in response.content.decode()
    # Only the hash is kept; the page never shows the key again, reloading makes no new key.
    assert api_key.hashed_key == api_key_hash(key) and key not in api_key.hashed_key
    assert key not in client.get(_keys_url(world)).content.decode()
    assert OrganisationAPIKey.objects.count() == 1
    assert "portal.tenancy.fresh_api_key" not in client.session
    entry = AuditLogEntry.objects.get(event_type=AuditEvent.API_KEY_CREATED)
    assert (entry.actor_id, entry.organisation_id) == (world.group_manager.pk, world.group.pk)
    assert entry.data["prefix"] == api_key.prefix and key not in str(entry.data)
    access = api_key_access(key=key, as_of=timezone.now())
    assert access is not None and access.organisation == world.group


def test_keys_expire_and_revoked_keys_stop_at_once(
    world: World, client_for: Callable[[User], Client]
) -> None:
    now = timezone.now()
    soon, key = api_key_create(
        organisation=world.group, name="temp", actor=SYSTEM, expires_at=now + dt.timedelta(days=1)
    )
    assert api_key_access(key=key, as_of=now) is not None
    assert api_key_access(key=key, as_of=now + dt.timedelta(days=2)) is None
    assert api_key_access(key=key[:-1] + ("A" if key[-1] != "A" else "B"), as_of=now) is None
    assert api_key_access(key="smk_nonsense", as_of=now) is None

    client = client_for(world.group_manager)
    url = reverse(
        "tenancy:organisation_api_key_revoke",
        kwargs={"org_id": world.group.public_id, "api_key_id": soon.public_id},
    )
    assert client.post(url).status_code == 302
    assert api_key_access(key=key, as_of=now) is None
    soon.refresh_from_db()
    assert soon.revoked_at is not None
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.API_KEY_REVOKED).count() == 1
    # Revoking again changes nothing and says so.
    response = client.post(url, follow=True)
    assert "already been revoked" in response.content.decode()
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.API_KEY_REVOKED).count() == 1


def test_a_subsidiary_manager_cannot_see_or_revoke_the_groups_keys(
    world: World, client_for: Callable[[User], Client]
) -> None:
    group_key, _key = api_key_create(organisation=world.group, name="group", actor=SYSTEM)
    client = client_for(world.sub1_manager)
    assert client.get(_keys_url(world)).status_code == 404
    own = reverse("tenancy:organisation_api_keys", kwargs={"org_id": world.sub1.public_id})
    assert "group" not in client.get(own).context["api_keys"]
    url = reverse(
        "tenancy:organisation_api_key_revoke",
        kwargs={"org_id": world.sub1.public_id, "api_key_id": group_key.public_id},
    )
    assert client.post(url).status_code == 404
    group_key.refresh_from_db()
    assert group_key.revoked_at is None


def test_a_manager_demoted_a_moment_ago_can_no_longer_make_keys(world: World) -> None:
    access = organisation_access_for(
        user=world.group_manager, organisation_public_id=world.group.public_id
    )
    assert access is not None
    membership = Membership.objects.get(user=world.group_manager, organisation=world.group)
    membership_change_role(membership=membership, role=Role.VIEWER, actor=SYSTEM)
    with pytest.raises(ApiKeyManagementDenied):
        api_key_create(organisation=world.group, name="late", actor=SYSTEM, by=access)
    with pytest.raises(ApiKeyManagementDenied):
        api_key_revoke(
            api_key=api_key_create(organisation=world.group, name="k", actor=SYSTEM)[0],
            actor=SYSTEM,
            by=access,
            as_of=timezone.now(),
        )
    assert not OrganisationAPIKey.objects.filter(name="late").exists()


def test_an_expiry_day_in_the_past_is_refused(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.group_manager)
    response = client.post(_keys_url(world), {"name": "old", "expires_on": "2020-01-01"})
    assert response.status_code == 400
    assert "not over yet" in response.content.decode()
    assert not OrganisationAPIKey.objects.exists()
