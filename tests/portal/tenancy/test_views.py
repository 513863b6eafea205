"""The tenancy pages: landing, homes, members and invitations, driven through HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Invitation, Membership
from portal.tenancy.roles import Role
from portal.tenancy.tasks import invitation_send_task
from portal.users.models import User
from tests.conftest import World
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db
ClientFor = Callable[[User], Client]


def _members_url(world: World) -> str:
    return reverse("tenancy:account_members", args=[world.account_a.public_id])


def test_the_landing_page_lists_what_the_person_can_open(
    world: World, client_for: ClientFor
) -> None:
    body = client_for(world.alice).get(reverse("tenancy:home")).content.decode()
    assert "Account A" in body and "Account B" not in body
    body = client_for(world.group_manager).get(reverse("tenancy:home")).content.decode()
    assert "Group" in body and "2 accounts" in body


def test_a_person_without_memberships_is_told_how_to_get_one(client_for: ClientFor) -> None:
    body = client_for(make_user()).get(reverse("tenancy:home")).content.decode()
    assert "You have no accounts yet" in body


def test_the_landing_page_needs_a_sign_in() -> None:
    response = Client().get(reverse("tenancy:home"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_organisation_home_lists_subsidiaries_and_accounts(
    world: World, client_for: ClientFor
) -> None:
    client = client_for(world.group_manager)
    body = client.get(
        reverse("tenancy:organisation_home", args=[world.group.public_id])
    ).content.decode()
    assert "Sub 1" in body and "Sub 2" in body
    body = client.get(
        reverse("tenancy:organisation_home", args=[world.sub1.public_id])
    ).content.decode()
    assert "Acc 1" in body and "Acc 2" not in body


def test_the_account_home_shows_the_account_and_the_role(
    world: World, client_for: ClientFor
) -> None:
    body = (
        client_for(world.bob)
        .get(reverse("tenancy:account_home", args=[world.account_a.public_id]))
        .content.decode()
    )
    assert world.account_a.number in body and "Viewer" in body
    assert reverse("tenancy:account_members", args=[world.account_a.public_id]) not in body


def test_an_owner_invites_and_the_invitee_accepts_after_signing_up(
    world: World, client_for: ClientFor, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    owner = client_for(world.alice)
    response = owner.post(
        _members_url(world) + "invite/", {"email": "newcomer@example.com", "role": Role.PAYER}
    )
    assert response.status_code == 302
    invitation = Invitation.objects.get(email="newcomer@example.com")
    assert invitation_send_task(invitation_id=invitation.pk)
    link = next(line for line in mail.outbox[0].body.splitlines() if "/invitations/" in line)
    path = link[link.index("/invitations/") :].strip()

    visitor = Client()
    page = visitor.get(path)
    assert page.status_code == 200 and "Account A" in page.content.decode()
    # The address is proven by the link: signing up from here needs no verification email.
    response = visitor.post(
        reverse("account_signup") + f"?next={path}",
        {
            "email": "newcomer@example.com",
            "password1": "a-sound-passphrase",
            "password2": "a-sound-passphrase",
            "next": path,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == path
    response = visitor.post(path)
    assert response.status_code == 302
    assert response["Location"] == reverse("tenancy:account_home", args=[world.account_a.public_id])
    membership = Membership.objects.get(user__email="newcomer@example.com")
    assert (membership.account_id, membership.role) == (world.account_a.pk, Role.PAYER)


def test_signing_up_from_an_invitation_with_another_address_verifies_that_address(
    world: World, client_for: ClientFor
) -> None:
    # Issue 12, finding 3: the invited address became the new login's verified primary,
    # whatever was typed, and no mail went to the typed address.
    from allauth.account.models import EmailAddress
    from django.core import mail

    from portal.tenancy.selectors import invitation_link

    client_for(world.alice).post(
        _members_url(world) + "invite/", {"email": "invited@example.com", "role": Role.VIEWER}
    )
    invitation = Invitation.objects.get(email="invited@example.com")
    path = invitation_link(invitation=invitation)
    visitor = Client()
    assert visitor.get(path).status_code == 200
    mail.outbox.clear()
    response = visitor.post(
        reverse("account_signup") + f"?next={path}",
        {
            "email": "typed@example.com",
            "password1": "a-sound-passphrase",
            "password2": "a-sound-passphrase",
            "next": path,
        },
    )
    assert response.status_code == 302
    assert response["Location"] != path  # not signed in: the typed address is to be confirmed
    addresses = list(
        EmailAddress.objects.filter(user__email="typed@example.com").values_list(
            "email", "verified", "primary"
        )
    )
    assert addresses == [("typed@example.com", False, True)]
    assert [m.to for m in mail.outbox] == [["typed@example.com"]]
    assert not Membership.objects.filter(user__email="typed@example.com").exists()


def test_signing_in_as_someone_else_cannot_use_the_invitation(
    world: World, client_for: ClientFor
) -> None:
    client_for(world.alice).post(
        _members_url(world) + "invite/", {"email": "newcomer@example.com", "role": Role.VIEWER}
    )
    invitation = Invitation.objects.get(email="newcomer@example.com")
    from portal.tenancy.selectors import invitation_link

    path = invitation_link(invitation=invitation)
    response = client_for(world.charlie).post(path, follow=True)
    assert "different email address" in response.content.decode()
    assert not Membership.objects.filter(user=world.charlie, account=world.account_a).exists()


def test_an_unknown_invitation_link_is_a_404() -> None:
    assert Client().get("/invitations/not-a-token/").status_code == 404


def test_a_manager_changes_a_role_and_removes_a_member(world: World, client_for: ClientFor) -> None:
    manager = client_for(world.max)
    bob = Membership.objects.get(user=world.bob, account=world.account_a)
    start = AuditLogEntry.objects.order_by("-id").values_list("id", flat=True)[0]
    manager.post(f"{_members_url(world)}{bob.public_id}/role/", {"role": Role.PAYER})
    bob.refresh_from_db()
    assert bob.role == Role.PAYER
    manager.post(f"{_members_url(world)}{bob.public_id}/remove/")
    assert not Membership.objects.filter(pk=bob.pk).exists()
    events = list(AuditLogEntry.objects.filter(id__gt=start).values_list("event_type", flat=True))
    assert events == [AuditEvent.MEMBER_ROLE_CHANGED, AuditEvent.MEMBER_REMOVED]


def test_a_manager_is_told_when_a_change_is_refused(world: World, client_for: ClientFor) -> None:
    manager = client_for(world.max)
    alice = Membership.objects.get(user=world.alice, account=world.account_a)
    response = manager.post(f"{_members_url(world)}{alice.public_id}/remove/", follow=True)
    assert "Your role does not allow this change" in response.content.decode()
    assert Membership.objects.filter(pk=alice.pk).exists()
    response = manager.post(
        _members_url(world) + "invite/", {"email": "x@example.com", "role": Role.OWNER}, follow=True
    )
    assert "Select a valid choice" in response.content.decode()
    assert not Invitation.objects.filter(email="x@example.com").exists()


def test_the_owner_cannot_remove_themselves_as_last_owner(
    world: World, client_for: ClientFor
) -> None:
    alice = Membership.objects.get(user=world.alice, account=world.account_a)
    response = client_for(world.alice).post(
        f"{_members_url(world)}{alice.public_id}/remove/", follow=True
    )
    assert "last owner" in response.content.decode()


def test_a_pending_invitation_can_be_withdrawn(world: World, client_for: ClientFor) -> None:
    owner = client_for(world.alice)
    owner.post(_members_url(world) + "invite/", {"email": "later@example.com", "role": Role.VIEWER})
    invitation = Invitation.objects.get(email="later@example.com")
    page = owner.get(_members_url(world)).content.decode()
    assert "later@example.com" in page
    revoke = reverse(
        "tenancy:account_invitation_revoke", args=[world.account_a.public_id, invitation.public_id]
    )
    owner.post(revoke)
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None


def test_organisation_managers_manage_the_organisations_members(
    world: World, client_for: ClientFor
) -> None:
    client = client_for(world.group_manager)
    url = reverse("tenancy:organisation_members", args=[world.sub1.public_id])
    page = client.get(url).content.decode()
    assert "s1m@example.com" in page  # sub1's own manager
    assert "gm@example.com" in page  # inherited from the group, shown read-only
    client.post(url + "invite/", {"email": "analyst@example.com", "role": Role.VIEWER})
    invitation = Invitation.objects.get(email="analyst@example.com")
    assert invitation.organisation_id == world.sub1.pk


def test_signing_in_with_the_seeded_password_works(world: World) -> None:
    client = Client()
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("tenancy:home")


def test_an_organisation_can_require_a_second_factor_of_its_managers(
    world: World, client_for: ClientFor
) -> None:
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from portal.tenancy.services.organisations import organisation_update
    from tests.factories import SYSTEM, make_membership

    organisation_update(organisation=world.group, changes={"require_mfa": True}, actor=SYSTEM)
    page = reverse("tenancy:account_home", args=[world.acc1.public_id])
    api = reverse("tenancy:api_account_detail", args=[world.acc1.public_id])
    manager = client_for(world.sub1_manager)  # manager of a subsidiary of the group
    response = manager.get(page)
    assert response.status_code == 302 and response["Location"] == reverse("mfa_index")
    assert manager.get(api).status_code == 403
    viewer = make_user("org-viewer@example.com")
    make_membership(viewer, Role.VIEWER, organisation=world.sub1)
    assert client_for(viewer).get(page).status_code == 200  # viewers are not asked
    TOTP.activate(world.sub1_manager, generate_totp_secret())
    assert manager.get(page).status_code == 200
    assert manager.get(api).status_code == 200
