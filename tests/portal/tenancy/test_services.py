"""Tenancy services: the rules they enforce, and exactly one audit entry per change."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError

from portal.audit.actors import SystemActor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.exceptions import (
    AlreadyMember,
    InvitationEmailMismatch,
    InvitationExpired,
    InvitationInvalid,
    InvitationInviterLostAuthority,
    InvitationNotPending,
    LastOwnerError,
    MemberManagementDenied,
    OrganisationTooDeep,
    OrganisationTreeError,
)
from portal.tenancy.models import MAX_ORGANISATION_DEPTH, Account, Membership, Organisation
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import (
    account_access_for_account,
    invitation_from_token,
    organisation_access_for,
    tenants_visible_to,
)
from portal.tenancy.services.accounts import account_create, account_update
from portal.tenancy.services.invitations import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    invitations_expire,
)
from portal.tenancy.services.members import (
    membership_change_role,
    membership_create,
    membership_remove,
)
from portal.tenancy.services.organisations import (
    organisation_create,
    organisation_move,
    organisation_update,
)
from portal.tenancy.tasks import invitation_send_task
from portal.tenancy.tokens import invitation_token
from tests.conftest import World
from tests.factories import SYSTEM, make_account, make_membership, make_organisation, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


@contextmanager
def one_entry(event: AuditEvent) -> Iterator[list[AuditLogEntry]]:
    """Assert the block writes exactly one audit entry, of the given event."""
    before = AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    found: list[AuditLogEntry] = []
    yield found
    new = list(AuditLogEntry.objects.filter(id__gt=before).order_by("id"))
    assert [e.event_type for e in new] == [event], [e.event_name for e in new]
    found.extend(new)


@contextmanager
def no_entry() -> Iterator[None]:
    before = AuditLogEntry.objects.count()
    yield
    assert AuditLogEntry.objects.count() == before


def access(world: World, user_attr: str, account: Account | None = None) -> Any:
    user = getattr(world, user_attr)
    result = account_access_for_account(user=user, account=account or world.account_a)
    assert result is not None
    return result


# --- organisations --------------------------------------------------------------------------


def test_organisation_tree_paths_and_subtree_queries() -> None:
    with one_entry(AuditEvent.ORGANISATION_CREATED):
        group = make_organisation("Group")
    sub = make_organisation("Sub", parent=group)
    subsub = make_organisation("Sub-sub", parent=sub)
    assert group.path == f"/{group.pk}/"
    assert subsub.path == f"/{group.pk}/{sub.pk}/{subsub.pk}/"
    assert subsub.depth == 2
    assert set(Organisation.objects.subtree_of(sub)) == {sub, subsub}
    account = make_account(organisation=subsub)
    assert list(Account.objects.in_subtree(group)) == [account]


def test_organisation_memberships_cascade_down_the_subtree_only() -> None:
    group = make_organisation("Group")
    sub = make_organisation("Sub", parent=group)
    subsub = make_organisation("Sub-sub", parent=sub)
    deep_account = make_account(organisation=subsub)
    user = make_user()
    make_membership(user, Role.VIEWER, organisation=sub)
    assert account_access_for_account(user=user, account=deep_account) is not None
    assert organisation_access_for(user=user, organisation_public_id=subsub.public_id) is not None
    assert organisation_access_for(user=user, organisation_public_id=group.public_id) is None


def test_the_strongest_applicable_role_wins() -> None:
    group = make_organisation()
    account = make_account(organisation=group)
    user = make_user()
    make_membership(user, Role.VIEWER, account=account)
    make_membership(user, Role.MANAGER, organisation=group)
    result = account_access_for_account(user=user, account=account)
    assert result is not None
    assert result.role == Role.MANAGER
    assert result.inherited


def test_moving_an_organisation_rewrites_the_subtree() -> None:
    a = make_organisation("A")
    b = make_organisation("B")
    child = make_organisation("Child", parent=a)
    grandchild = make_organisation("Grandchild", parent=child)
    with one_entry(AuditEvent.ORGANISATION_MOVED):
        organisation_move(organisation=child, parent=b, actor=SYSTEM)
    grandchild.refresh_from_db()
    assert grandchild.path == f"/{b.pk}/{child.pk}/{grandchild.pk}/"
    assert grandchild.depth == 2
    with no_entry():
        organisation_move(organisation=child, parent=b, actor=SYSTEM)


def test_an_organisation_cannot_move_under_its_own_subtree() -> None:
    a = make_organisation("A")
    child = make_organisation("Child", parent=a)
    with pytest.raises(OrganisationTreeError), no_entry():
        organisation_move(organisation=a, parent=child, actor=SYSTEM)
    with pytest.raises(OrganisationTreeError):
        organisation_move(organisation=a, parent=a, actor=SYSTEM)


def test_the_tree_depth_is_bounded() -> None:
    parent = make_organisation()
    for _ in range(MAX_ORGANISATION_DEPTH - 1):
        parent = make_organisation(parent=parent)
    with pytest.raises(OrganisationTooDeep):
        make_organisation(parent=parent)


def test_organisation_update_records_before_and_after_and_skips_no_ops() -> None:
    org = make_organisation("Old name")
    with one_entry(AuditEvent.ORGANISATION_UPDATED) as entries:
        organisation_update(organisation=org, changes={"name": "New name"}, actor=SYSTEM)
    assert entries[0].data["changes"] == {"name": {"before": "Old name", "after": "New name"}}
    with no_entry():
        organisation_update(organisation=org, changes={"name": "New name"}, actor=SYSTEM)


# --- accounts -------------------------------------------------------------------------------


def _luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def test_accounts_get_numbers_with_a_check_digit() -> None:
    with one_entry(AuditEvent.ACCOUNT_CREATED):
        first = make_account()
    second = make_account()
    assert first.number != second.number
    assert _luhn_ok(first.number) and _luhn_ok(second.number)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("currency", "XYZ"),
        ("currency", "usd"),
        ("time_zone", "Mars/Olympus"),
        ("payment_mode", "barter"),
    ],
)
def test_account_create_refuses_bad_values_and_writes_nothing(field: str, value: str) -> None:
    values = {"payment_mode": "prepaid", "currency": "EUR", "time_zone": "Europe/Amsterdam"}
    values[field] = value
    before = Account.objects.count()
    with pytest.raises(ValidationError) as error, no_entry():
        account_create(
            name="Bad",
            actor=SYSTEM,
            payment_mode=values["payment_mode"],
            currency=values["currency"],
            time_zone=values["time_zone"],
        )
    assert field in error.value.message_dict
    assert Account.objects.count() == before


def test_account_update_audits_the_change() -> None:
    account = make_account("Before")
    group = make_organisation("Group")
    with one_entry(AuditEvent.ACCOUNT_UPDATED) as entries:
        account_update(
            account=account, changes={"name": "After", "organisation": group}, actor=SYSTEM
        )
    assert entries[0].data["changes"]["organisation"] == {"before": None, "after": "Group"}
    assert entries[0].organisation_id == group.pk


# --- memberships ----------------------------------------------------------------------------


def test_membership_create_is_audited_and_unique(world: World) -> None:
    user = make_user()
    with one_entry(AuditEvent.MEMBER_ADDED) as entries:
        membership_create(user=user, role=Role.VIEWER, account=world.account_a, actor=SYSTEM)
    assert entries[0].account_id == world.account_a.pk
    assert entries[0].data["role"] == "viewer"
    with pytest.raises(AlreadyMember):
        membership_create(user=user, role=Role.PAYER, account=world.account_a, actor=SYSTEM)


def test_membership_needs_exactly_one_tenant(world: World) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        membership_create(user=world.bob, role=Role.VIEWER, actor=SYSTEM)


def test_the_last_owner_can_be_neither_removed_nor_demoted(world: World) -> None:
    owner = Membership.objects.get(user=world.alice, account=world.account_a)
    with pytest.raises(LastOwnerError), no_entry():
        membership_remove(membership=owner, actor=SYSTEM)
    with pytest.raises(LastOwnerError), no_entry():
        membership_change_role(membership=owner, role=Role.MANAGER, actor=SYSTEM)
    # With a second owner, the first may go.
    second = Membership.objects.get(user=world.max, account=world.account_a)
    with one_entry(AuditEvent.MEMBER_ROLE_CHANGED):
        membership_change_role(membership=second, role=Role.OWNER, actor=SYSTEM)
    with one_entry(AuditEvent.MEMBER_REMOVED):
        membership_remove(membership=owner, actor=SYSTEM)


def test_a_manager_cannot_grant_or_touch_ownership(world: World) -> None:
    by = access(world, "max")
    bob = Membership.objects.get(user=world.bob, account=world.account_a)
    alice = Membership.objects.get(user=world.alice, account=world.account_a)
    with pytest.raises(MemberManagementDenied):
        membership_change_role(membership=bob, role=Role.OWNER, actor=SYSTEM, by=by)
    with pytest.raises(MemberManagementDenied):
        membership_remove(membership=alice, actor=SYSTEM, by=by)
    with one_entry(AuditEvent.MEMBER_ROLE_CHANGED):
        membership_change_role(membership=bob, role=Role.PAYER, actor=SYSTEM, by=by)


def test_a_viewer_cannot_manage_members_but_may_leave(world: World) -> None:
    by = access(world, "bob")
    pat = Membership.objects.get(user=world.pat, account=world.account_a)
    with pytest.raises(MemberManagementDenied):
        membership_remove(membership=pat, actor=SYSTEM, by=by)
    own = Membership.objects.get(user=world.bob, account=world.account_a)
    with one_entry(AuditEvent.MEMBER_REMOVED) as entries:
        membership_remove(membership=own, actor=SYSTEM, by=by)
    assert entries[0].data["left"] is True


def test_access_for_one_tenant_cannot_authorise_changes_on_another(world: World) -> None:
    by = access(world, "alice")  # owner of account A
    charlie = Membership.objects.get(user=world.charlie, account=world.account_b)
    with pytest.raises(MemberManagementDenied):
        membership_change_role(membership=charlie, role=Role.VIEWER, actor=SYSTEM, by=by)


def test_tenants_visible_to_lists_direct_accounts_and_organisations(world: World) -> None:
    visible = tenants_visible_to(user=world.group_manager)
    assert [(o.organisation.name, o.role, o.account_count) for o in visible.organisations] == [
        ("Group", Role.MANAGER, 2)
    ]
    assert Scope.MEMBERS_MANAGE in visible.organisations[0].scopes
    assert visible.accounts == []
    held = tenants_visible_to(user=world.bob).accounts
    assert [(a.account.name, a.role) for a in held] == [("Account A", Role.VIEWER)]
    assert held[0].scopes == {Scope.METERS_READ, Scope.BILLING_READ}


def test_tenants_visible_to_counts_subtrees_in_one_query(
    world: World, django_assert_num_queries: Any
) -> None:
    for name in ("Sub 1", "Sub 2"):
        make_membership(
            world.group_manager, Role.VIEWER, organisation=Organisation.objects.get(name=name)
        )
    with django_assert_num_queries(1):
        visible = tenants_visible_to(user=world.group_manager)
    assert [o.account_count for o in visible.organisations] == [2, 1, 1]


# --- invitations ----------------------------------------------------------------------------


def _invite(
    world: World, email: str = "new@example.com", role: Role = Role.PAYER, **kw: Any
) -> Any:
    return invitation_create(
        email=email, role=role, account=world.account_a, actor=SYSTEM, as_of=NOW, **kw
    )


def test_an_invitation_is_audited_and_emailed_after_commit(
    world: World, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with (
        one_entry(AuditEvent.INVITATION_CREATED),
        django_capture_on_commit_callbacks() as callbacks,
    ):
        invitation = _invite(world, "New@Example.com ")
    assert invitation.email == "new@example.com"
    assert len(callbacks) == 1
    # The task is what the callback enqueues; run it as the worker would.
    with time_machine.travel(NOW):
        assert invitation_send_task(invitation_id=invitation.pk) is True
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new@example.com"]
    assert invitation_token(public_id=invitation.public_id, nonce=invitation.nonce) in message.body


def test_inviting_again_resends_with_a_new_link(world: World) -> None:
    first = _invite(world)
    old_nonce = first.nonce
    with one_entry(AuditEvent.INVITATION_RESENT):
        again = _invite(world, role=Role.VIEWER)
    assert again.pk == first.pk
    assert again.nonce != old_nonce
    old_token = invitation_token(public_id=first.public_id, nonce=old_nonce)
    with pytest.raises(InvitationInvalid):
        invitation_from_token(token=old_token)


def test_a_member_cannot_be_invited_again(world: World) -> None:
    with pytest.raises(AlreadyMember):
        _invite(world, "bob@example.com")


def test_a_manager_cannot_invite_an_owner(world: World) -> None:
    with pytest.raises(MemberManagementDenied):
        _invite(world, role=Role.OWNER, by=access(world, "max"))


def test_accepting_an_invitation_creates_the_membership(world: World) -> None:
    invitation = _invite(world)
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    newcomer = make_user("new@example.com")
    with one_entry(AuditEvent.INVITATION_ACCEPTED):
        membership = invitation_accept(token=token, actor=UserActor(user=newcomer), as_of=NOW)
    assert membership.role == Role.PAYER
    assert membership.account_id == world.account_a.pk
    with pytest.raises(InvitationNotPending):
        invitation_accept(token=token, actor=UserActor(user=newcomer), as_of=NOW)


def test_an_invitation_only_works_for_its_own_address(world: World) -> None:
    invitation = _invite(world)
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    with pytest.raises(InvitationEmailMismatch), no_entry():
        invitation_accept(token=token, actor=UserActor(user=world.charlie), as_of=NOW)


def test_an_expired_invitation_cannot_be_accepted_and_is_closed_by_the_task(world: World) -> None:
    invitation = _invite(world)
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    later = NOW + dt.timedelta(days=15)
    newcomer = make_user("new@example.com")
    with pytest.raises(InvitationExpired):
        invitation_accept(token=token, actor=UserActor(user=newcomer), as_of=later)
    with one_entry(AuditEvent.INVITATION_EXPIRED):
        assert invitations_expire(as_of=later, actor=SystemActor("test")) == 1
    with no_entry():
        assert invitations_expire(as_of=later, actor=SystemActor("test")) == 0


def test_a_revoked_invitation_stops_working(world: World) -> None:
    invitation = _invite(world)
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    with one_entry(AuditEvent.INVITATION_REVOKED):
        invitation_revoke(invitation=invitation, actor=SYSTEM, as_of=NOW)
    with pytest.raises(InvitationNotPending):
        invitation_accept(
            token=token, actor=UserActor(user=make_user("new@example.com")), as_of=NOW
        )
    assert invitation_send_task(invitation_id=invitation.pk) is False
    assert mail.outbox == []


@pytest.mark.parametrize("token", ["", "nonsense", "0" * 32 + "-" + "0" * 64, "x" * 200])
def test_malformed_or_forged_tokens_are_refused(world: World, token: str) -> None:
    _invite(world)
    with pytest.raises(InvitationInvalid):
        invitation_from_token(token=token)


def test_a_refused_change_leaves_no_audit_entry_and_no_row(world: World) -> None:
    before = (AuditLogEntry.objects.count(), Organisation.objects.count())
    with pytest.raises(ValidationError):
        organisation_create(name="x" * 300, actor=SYSTEM)
    assert (AuditLogEntry.objects.count(), Organisation.objects.count()) == before


def test_an_invitation_never_changes_an_existing_membership(world: World) -> None:
    invitation = _invite(world, "bob.alias@example.com", role=Role.MANAGER)
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    # Bob adds and verifies the invited alias on his own login, then tries the link.
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=world.bob, email="bob.alias@example.com", verified=True)
    with pytest.raises(AlreadyMember), no_entry():
        invitation_accept(token=token, actor=UserActor(user=world.bob), as_of=NOW)
    assert Membership.objects.get(user=world.bob, account=world.account_a).role == Role.VIEWER


def test_an_invitation_from_someone_who_lost_the_right_is_void(world: World) -> None:
    invitation = _invite(world, role=Role.MANAGER, by=access(world, "max"))
    invitation.invited_by = world.max
    invitation.save(update_fields=["invited_by"])
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    # The owner demotes the manager who sent it.
    max_membership = Membership.objects.get(user=world.max, account=world.account_a)
    membership_change_role(membership=max_membership, role=Role.VIEWER, actor=SYSTEM)
    newcomer = make_user("new@example.com")
    with pytest.raises(InvitationInviterLostAuthority), no_entry():
        invitation_accept(token=token, actor=UserActor(user=newcomer), as_of=NOW)


def test_a_manager_cannot_overwrite_an_owners_pending_invitation(world: World) -> None:
    _invite(world, "heir@example.com", role=Role.OWNER)
    with pytest.raises(MemberManagementDenied):
        _invite(world, "heir@example.com", role=Role.VIEWER, by=access(world, "max"))


def test_a_stale_access_object_no_longer_authorises(world: World) -> None:
    by = access(world, "max")  # read while max is a manager
    max_membership = Membership.objects.get(user=world.max, account=world.account_a)
    membership_change_role(membership=max_membership, role=Role.VIEWER, actor=SYSTEM)
    bob = Membership.objects.get(user=world.bob, account=world.account_a)
    with pytest.raises(MemberManagementDenied):
        membership_change_role(membership=bob, role=Role.PAYER, actor=SYSTEM, by=by)
