"""Writes for organisations, accounts, memberships and invitations; each one audited.

Services that change members take `by`, the acting person's access to the tenant, when the
change comes from the portal; staff (admin) and system callers pass `by=None` because their
authority was checked by Django permissions or is the system's own.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Substr
from django.template.loader import render_to_string
from django.utils import timezone, translation

from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes
from portal.lib.timezones import default_time_zone
from portal.tenancy.exceptions import (
    AlreadyMember,
    ApiKeyManagementDenied,
    ApiKeyRevoked,
    InvitationEmailMismatch,
    InvitationExpired,
    InvitationInviterLostAuthority,
    InvitationNotPending,
    LastOwnerError,
    MemberManagementDenied,
    OrganisationTooDeep,
    OrganisationTreeError,
)
from portal.tenancy.models import (
    MAX_ORGANISATION_DEPTH,
    Account,
    Invitation,
    Membership,
    Organisation,
    OrganisationAPIKey,
)
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import (
    AccountAccess,
    OrganisationAccess,
    TenantAccess,
    account_access_for_account,
    invitation_from_token,
    invitation_link,
    organisation_access_for,
)
from portal.tenancy.tokens import api_key_generate
from portal.users.models import User

Tenant = Account | Organisation


def _next_id(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
        (value,) = cursor.fetchone()
    return int(value)


# Every change to the organisation tree holds this transaction-scoped lock: a child created while
# its parent moves, or two crossing moves, would otherwise leave stale paths or a cycle.
_TREE_LOCK_KEY = 0x0_7E_E0


def _lock_tree() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_TREE_LOCK_KEY])


def _audit_value(value: Any) -> Any:
    if isinstance(value, Organisation | Account):
        return str(value)
    return value


# --- Organisations ---------------------------------------------------------------------------


@transaction.atomic
def organisation_create(
    *,
    name: str,
    actor: Actor,
    parent: Organisation | None = None,
    require_mfa: bool = False,
    time_zone: str | None = None,
) -> Organisation:
    """Create an organisation at the top or beneath `parent`.

    Without `time_zone` it takes its parent's zone (a subsidiary is usually where its group
    is), or the site's at the top.

    :raises OrganisationTooDeep: beyond MAX_ORGANISATION_DEPTH levels.
    """
    _lock_tree()
    if parent is not None:
        parent.refresh_from_db()
    depth = parent.depth + 1 if parent is not None else 0
    if depth >= MAX_ORGANISATION_DEPTH:
        raise OrganisationTooDeep
    new_id = _next_id("tenancy_organisation")
    organisation = Organisation(
        id=new_id,
        name=name,
        parent=parent,
        path=f"{parent.path if parent else '/'}{new_id}/",
        depth=depth,
        require_mfa=require_mfa,
        time_zone=time_zone or (parent.time_zone if parent else default_time_zone()),
    )
    organisation.full_clean()
    organisation.save(force_insert=True)
    audit_record(
        actor=actor,
        event=AuditEvent.ORGANISATION_CREATED,
        organisation=organisation,
        target=organisation,
        data={"name": name, "parent": parent.name if parent else None},
    )
    return organisation


@transaction.atomic
def organisation_update(
    *, organisation: Organisation, changes: Mapping[str, Any], actor: Actor
) -> Organisation:
    """Change an organisation's name, MFA requirement or time zone; moving it is
    organisation_move."""
    diff = apply_changes(
        organisation,
        changes,
        allowed={"name", "require_mfa", "time_zone"},
        describe=_audit_value,
    )
    if not diff:
        return organisation
    organisation.full_clean()
    organisation.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.ORGANISATION_UPDATED,
        organisation=organisation,
        target=organisation,
        data={"name": organisation.name, "changes": diff},
    )
    return organisation


@transaction.atomic
def organisation_move(
    *, organisation: Organisation, parent: Organisation | None, actor: Actor
) -> Organisation:
    """Place an organisation (and its subtree) under another parent, or at the top.

    :raises OrganisationTreeError: if `parent` is the organisation or one of its descendants.
    :raises OrganisationTooDeep: if the subtree would exceed MAX_ORGANISATION_DEPTH.
    """
    _lock_tree()
    subtree = list(
        Organisation.objects.select_for_update().filter(path__startswith=organisation.path)
    )
    organisation.refresh_from_db()
    if parent is not None:
        parent.refresh_from_db()
        if parent.path.startswith(organisation.path):
            raise OrganisationTreeError
    if organisation.parent_id == (parent.pk if parent else None):
        return organisation
    old_path = organisation.path
    new_path = f"{parent.path if parent else '/'}{organisation.pk}/"
    new_depth = parent.depth + 1 if parent else 0
    delta = new_depth - organisation.depth
    if max(o.depth for o in subtree) + delta >= MAX_ORGANISATION_DEPTH:
        raise OrganisationTooDeep
    old_parent = organisation.parent
    Organisation.objects.filter(path__startswith=old_path).update(
        path=Concat(Value(new_path), Substr("path", len(old_path) + 1)),
        depth=F("depth") + delta,
    )
    Organisation.objects.filter(pk=organisation.pk).update(parent=parent)
    organisation.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.ORGANISATION_MOVED,
        organisation=organisation,
        target=organisation,
        data={
            "name": organisation.name,
            "parent": parent.name if parent else "-",
            "changes": {
                "parent": {
                    "before": old_parent.name if old_parent else None,
                    "after": parent.name if parent else None,
                }
            },
        },
    )
    return organisation


# --- Accounts --------------------------------------------------------------------------------


def _luhn_digit(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def _next_account_number() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('tenancy_account_number_seq')")
        (value,) = cursor.fetchone()
    base = str(value)
    # A check digit catches the typos people make when reading a number out over the phone.
    return base + _luhn_digit(base)


@transaction.atomic
def account_create(
    *,
    name: str,
    payment_mode: str,
    currency: str,
    time_zone: str,
    actor: Actor,
    organisation: Organisation | None = None,
    number: str | None = None,
) -> Account:
    """Create an account; without `number` the next number with a check digit is assigned.

    :raises ValidationError: for an unknown payment mode, currency, time zone or a taken number.
    """
    account = Account(
        name=name,
        payment_mode=payment_mode,
        currency=currency,
        time_zone=time_zone,
        organisation=organisation,
        number=number or _next_account_number(),
    )
    account.full_clean()
    account.save(force_insert=True)
    audit_record(
        actor=actor,
        event=AuditEvent.ACCOUNT_CREATED,
        account=account,
        target=account,
        data={
            "number": account.number,
            "name": name,
            "payment_mode": payment_mode,
            "currency": currency,
            "time_zone": time_zone,
            "organisation": organisation.name if organisation else None,
        },
    )
    return account


_ACCOUNT_FIELDS = frozenset(
    {"name", "payment_mode", "currency", "time_zone", "organisation", "closed_at"}
)


@transaction.atomic
def account_update(*, account: Account, changes: Mapping[str, Any], actor: Actor) -> Account:
    """Change an account's details, its organisation, or close it.

    :raises ValidationError: for invalid values.
    """
    diff = apply_changes(account, changes, allowed=_ACCOUNT_FIELDS, describe=_audit_value)
    if not diff:
        return account
    account.full_clean()
    account.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.ACCOUNT_UPDATED,
        account=account,
        target=account,
        data={"number": account.number, "name": account.name, "changes": diff},
    )
    return account


@transaction.atomic
def account_staff_view_record(*, account: Account, actor: Actor) -> None:
    """Audit a member of staff opening an account's record: its holders' personal data."""
    audit_record(
        actor=actor,
        event=AuditEvent.ACCOUNT_VIEWED_BY_STAFF,
        account=account,
        target=account,
        data={"number": account.number, "name": account.name},
    )


# --- Memberships -----------------------------------------------------------------------------


def _tenant_kwargs(tenant: Tenant) -> dict[str, Any]:
    if isinstance(tenant, Account):
        return {"account": tenant}
    return {"organisation": tenant}


def _lock_tenant(tenant: Tenant) -> None:
    # Serialises member changes per tenant: two owners demoting each other at once must not
    # both succeed and leave the tenant without an owner.
    type(tenant).objects.select_for_update().filter(pk=tenant.pk).first()


def _current_access(user: User, tenant: Tenant) -> TenantAccess | None:
    if isinstance(tenant, Account):
        return account_access_for_account(user=user, account=tenant)
    return organisation_access_for(user=user, organisation_public_id=tenant.public_id)


def _check_may_grant(by: TenantAccess | None, tenant: Tenant, *roles: Role) -> None:
    """Refuse a member change the acting person's role does not cover.

    Call it after _lock_tenant: the acting person's access is read again under the lock, so a
    role taken away a moment ago no longer counts.
    """
    if by is None:
        return
    same_tenant = (
        isinstance(by, AccountAccess) and isinstance(tenant, Account) and by.account.pk == tenant.pk
    ) or (
        isinstance(by, OrganisationAccess)
        and isinstance(tenant, Organisation)
        and by.organisation.pk == tenant.pk
    )
    if not same_tenant:
        raise MemberManagementDenied
    current = _current_access(by.membership.user, tenant)
    _check_authority(current, *roles)


def _check_authority(access: TenantAccess | None, *roles: Role) -> None:
    if access is None or not access.has_scope(Scope.MEMBERS_MANAGE):
        raise MemberManagementDenied
    for role in roles:
        if role == Role.OWNER and not access.has_scope(Scope.TENANT_MANAGE):
            raise MemberManagementDenied
        if role.value < access.role.value:
            raise MemberManagementDenied


def _ensure_other_owner(membership: Membership) -> None:
    others = (
        Membership.objects.filter(**_tenant_kwargs(membership.tenant), role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )
    if not others:
        raise LastOwnerError


def _member_data(membership: Membership, **extra: Any) -> dict[str, Any]:
    return {
        "email": membership.user.email,
        "role": Role(membership.role).api_name,
        "tenant": str(membership.tenant),
        **extra,
    }


@transaction.atomic
def membership_create(
    *,
    user: User,
    role: Role,
    actor: Actor,
    account: Account | None = None,
    organisation: Organisation | None = None,
    by: TenantAccess | None = None,
) -> Membership:
    """Give a person a role on an account or an organisation.

    :raises AlreadyMember: if the person already holds a membership on that tenant.
    :raises MemberManagementDenied: if `by` may not grant this role.
    """
    tenant: Tenant = _one_tenant(account, organisation)
    _lock_tenant(tenant)
    _check_may_grant(by, tenant, role)
    if Membership.objects.filter(user=user, **_tenant_kwargs(tenant)).exists():
        raise AlreadyMember
    membership = Membership.objects.create(
        user=user,
        role=role,
        invited_by=actor.user if isinstance(actor, UserActor) else None,
        **_tenant_kwargs(tenant),
    )
    audit_record(
        actor=actor,
        event=AuditEvent.MEMBER_ADDED,
        target=membership,
        data=_member_data(membership),
        **_tenant_kwargs(tenant),
    )
    return membership


@transaction.atomic
def membership_change_role(
    *, membership: Membership, role: Role, actor: Actor, by: TenantAccess | None = None
) -> Membership:
    """Change a member's role.

    :raises LastOwnerError: when demoting the tenant's last owner.
    :raises MemberManagementDenied: if `by` may not make this change.
    """
    tenant = membership.tenant
    _lock_tenant(tenant)
    membership.refresh_from_db()
    old_role = Role(membership.role)
    if old_role == role:
        return membership
    _check_may_grant(by, tenant, old_role, role)
    if old_role == Role.OWNER:
        _ensure_other_owner(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        event=AuditEvent.MEMBER_ROLE_CHANGED,
        target=membership,
        data=_member_data(
            membership,
            old_role=old_role.api_name,
            changes={"role": {"before": old_role.api_name, "after": role.api_name}},
        ),
        **_tenant_kwargs(tenant),
    )
    return membership


@transaction.atomic
def membership_remove(
    *, membership: Membership, actor: Actor, by: TenantAccess | None = None
) -> None:
    """Remove a member; people may always leave on their own, unless they are the last owner.

    :raises LastOwnerError: when removing the tenant's last owner.
    :raises MemberManagementDenied: if `by` may not remove this member.
    """
    tenant = membership.tenant
    _lock_tenant(tenant)
    membership.refresh_from_db()
    role = Role(membership.role)
    leaving = by is not None and by.membership.pk == membership.pk
    if not leaving:
        _check_may_grant(by, tenant, role)
    if role == Role.OWNER:
        _ensure_other_owner(membership)
    data = _member_data(membership, left=leaving)
    membership_pk = membership.pk
    membership.delete()
    membership.pk = membership_pk
    audit_record(
        actor=actor,
        event=AuditEvent.MEMBER_REMOVED,
        target=membership,
        data=data,
        **_tenant_kwargs(tenant),
    )


def _one_tenant(account: Account | None, organisation: Organisation | None) -> Tenant:
    if (account is None) == (organisation is None):
        raise ValueError("give exactly one of account and organisation")
    return account if account is not None else organisation  # type: ignore[return-value]


# --- Invitations -----------------------------------------------------------------------------


def _invitation_data(invitation: Invitation) -> dict[str, Any]:
    return {
        "email": invitation.email,
        "role": Role(invitation.role).api_name,
        "tenant": str(invitation.tenant),
        "expires_at": invitation.expires_at,
    }


@transaction.atomic
def invitation_create(
    *,
    email: str,
    role: Role,
    actor: Actor,
    account: Account | None = None,
    organisation: Organisation | None = None,
    by: TenantAccess | None = None,
    language: str | None = None,
    as_of: dt.datetime | None = None,
) -> Invitation:
    """Invite a person by email; inviting the same address again re-sends with a new link.

    The email goes out after the transaction commits (tenancy.tasks.invitation_send_task).

    :raises AlreadyMember: if a user with this email already holds a membership here.
    :raises MemberManagementDenied: if `by` may not grant this role.
    :raises ValidationError: for a malformed email address.
    """
    tenant = _one_tenant(account, organisation)
    now = as_of or timezone.now()
    email = User.objects.normalize_email(email).strip().lower()
    _lock_tenant(tenant)
    _check_may_grant(by, tenant, role)
    if Membership.objects.filter(user__email__iexact=email, **_tenant_kwargs(tenant)).exists():
        raise AlreadyMember
    invitation = (
        Invitation.objects.pending()
        .select_for_update()
        .filter(email=email, **_tenant_kwargs(tenant))
        .first()
    )
    event = AuditEvent.INVITATION_RESENT if invitation else AuditEvent.INVITATION_CREATED
    if invitation is not None:
        # Re-inviting replaces the pending invitation: only someone who could have made it may.
        _check_may_grant(by, tenant, Role(invitation.role))
    if invitation is None:
        invitation = Invitation(email=email, created_at=now, **_tenant_kwargs(tenant))
    invitation.role = role
    invitation.nonce = secrets.token_hex(16)
    invitation.language = language or translation.get_language() or settings.LANGUAGE_CODE
    invitation.invited_by = actor.user if isinstance(actor, UserActor) else None
    invitation.expires_at = now + settings.PORTAL_INVITATION_TTL
    invitation.full_clean()
    invitation.save()
    audit_record(
        actor=actor,
        event=event,
        target=invitation,
        data=_invitation_data(invitation),
        **_tenant_kwargs(tenant),
    )
    invitation_id = invitation.pk
    # Imported here: tasks import this module (services : tasks are siblings in the layers).
    from portal.tenancy.tasks import invitation_send_task

    transaction.on_commit(lambda: invitation_send_task.delay(invitation_id=invitation_id))
    return invitation


@transaction.atomic
def invitation_email_send(*, invitation: Invitation, base_url: str, as_of: dt.datetime) -> bool:
    """Send the invitation email in the inviter's language; False if it is no longer pending."""
    invitation = (
        Invitation.objects.select_for_update(of=("self",))
        .select_related("account", "organisation", "invited_by")
        .get(pk=invitation.pk)
    )
    if invitation.accepted_at or invitation.revoked_at or invitation.expires_at <= as_of:
        return False
    context = {
        "invitation": invitation,
        "tenant": invitation.tenant,
        "role": Role(invitation.role).label,
        "inviter": invitation.invited_by.email
        if invitation.invited_by
        else settings.PORTAL_SITE_NAME,
        "link": base_url.rstrip("/") + invitation_link(invitation=invitation),
        "site_name": settings.PORTAL_SITE_NAME,
    }
    with translation.override(invitation.language):
        subject = render_to_string("tenancy/email/invitation_subject.txt", context).strip()
        body = render_to_string("tenancy/email/invitation_message.txt", context)
        message = EmailMultiAlternatives(
            subject=" ".join(subject.splitlines()), body=body, to=[invitation.email]
        )
        message.send()
    invitation.last_sent_at = as_of
    invitation.save(update_fields=["last_sent_at"])
    return True


def _user_owns_email(user: User, email: str) -> bool:
    from allauth.account.models import EmailAddress

    if user.email.lower() == email:
        return True
    return bool(EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists())


@transaction.atomic
def invitation_accept(*, token: str, actor: UserActor, as_of: dt.datetime) -> Membership:
    """Accept an invitation as the signed-in person it was sent to.

    The inviter's authority is checked again now: an invitation from someone who has since
    lost the right to give that role is void. People who are already members are told so; an
    invitation never changes an existing membership (roles change through the member pages).

    :raises InvitationInvalid: malformed or forged token.
    :raises InvitationNotPending: already accepted or revoked.
    :raises InvitationExpired: past its expiry.
    :raises InvitationEmailMismatch: the signed-in person does not own the invited address.
    :raises InvitationInviterLostAuthority: the inviter may no longer give this role.
    :raises AlreadyMember: the person already holds a membership on the tenant.
    """
    found = invitation_from_token(token=token)
    # Tenant first, then the invitation: the same order as invitation_create, so the two
    # cannot deadlock.
    _lock_tenant(found.tenant)
    invitation = (
        Invitation.objects.select_for_update(of=("self",))
        .select_related("account", "organisation", "invited_by")
        .get(pk=found.pk)
    )
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise InvitationNotPending
    if invitation.expires_at <= as_of:
        raise InvitationExpired
    user = actor.user
    if not _user_owns_email(user, invitation.email):
        raise InvitationEmailMismatch
    tenant = invitation.tenant
    role = Role(invitation.role)
    if invitation.invited_by is not None:
        try:
            _check_authority(_current_access(invitation.invited_by, tenant), role)
        except MemberManagementDenied:
            raise InvitationInviterLostAuthority from None
    if Membership.objects.filter(user=user, **_tenant_kwargs(tenant)).exists():
        raise AlreadyMember
    membership = Membership.objects.create(
        user=user, role=role, invited_by=invitation.invited_by, **_tenant_kwargs(tenant)
    )
    invitation.accepted_at = as_of
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        actor=actor,
        event=AuditEvent.INVITATION_ACCEPTED,
        target=membership,
        data=_invitation_data(invitation),
        **_tenant_kwargs(tenant),
    )
    return membership


@transaction.atomic
def invitation_revoke(
    *, invitation: Invitation, actor: Actor, by: TenantAccess | None = None, as_of: dt.datetime
) -> Invitation:
    """Withdraw a pending invitation; its link stops working at once.

    :raises InvitationNotPending: if it was already accepted or revoked.
    :raises MemberManagementDenied: if `by` may not manage members of this role.
    """
    invitation = (
        Invitation.objects.select_for_update(of=("self",))
        .select_related("account", "organisation")
        .get(pk=invitation.pk)
    )
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise InvitationNotPending
    _check_may_grant(by, invitation.tenant, Role(invitation.role))
    invitation.revoked_at = as_of
    invitation.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        event=AuditEvent.INVITATION_REVOKED,
        target=invitation,
        data=_invitation_data(invitation),
        **_tenant_kwargs(invitation.tenant),
    )
    return invitation


def invitations_expire(*, as_of: dt.datetime, actor: Actor, batch_size: int = 500) -> int:
    """Close pending invitations past their expiry, one audited transaction per batch."""
    expired = 0
    while True:
        with transaction.atomic():
            batch = list(
                Invitation.objects.pending()
                .filter(expires_at__lte=as_of)
                .select_related("account", "organisation")
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")[:batch_size]
            )
            for invitation in batch:
                invitation.revoked_at = as_of
                invitation.save(update_fields=["revoked_at"])
                audit_record(
                    actor=actor,
                    event=AuditEvent.INVITATION_EXPIRED,
                    target=invitation,
                    data=_invitation_data(invitation),
                    **_tenant_kwargs(invitation.tenant),
                )
        expired += len(batch)
        if len(batch) < batch_size:
            return expired


# --- Denials ---------------------------------------------------------------------------------


# Every denial is one entry: the log is exact, and the chain lock it takes is its tenant's only
# (portal/audit/chain.py), so a flood of denials in one tenant delays nobody else's writes.
DENIAL_REASONS = frozenset({"role", "api_key"})


@transaction.atomic
def access_denied_record(
    *,
    actor: Actor,
    scope: Scope,
    path: str,
    account: Account | None = None,
    organisation: Organisation | None = None,
    reason: str = "role",
) -> None:
    """Audit a request refused for a missing scope (the 403s): a member's role lacks it
    (`reason` "role"), or an organisation's API key does ("api_key")."""
    if reason not in DENIAL_REASONS:
        raise ValueError(f"unknown denial reason {reason!r}")
    data = {"scope": str(scope), "path": path[:500]}
    if reason != "role":
        data["reason"] = reason
    audit_record(
        actor=actor,
        event=AuditEvent.ACCESS_DENIED,
        account=account,
        organisation=organisation,
        data=data,
    )


@transaction.atomic
def access_not_found_record(
    *,
    actor: Actor,
    path: str,
    account_public_id: uuid.UUID | None = None,
    organisation_public_id: uuid.UUID | None = None,
) -> None:
    """Audit a signed-in user's request for an account or organisation they are not a member
    of, answered 404 exactly as for one that does not exist.

    The entry is the actor's; when the account or organisation exists it is that tenant's too
    (so its members with `audit:read`, and staff, see who probed it). Nothing of this reaches
    the prober: the response does not depend on it.
    """
    account = (
        Account.objects.filter(public_id=account_public_id).first()
        if account_public_id is not None
        else None
    )
    organisation = (
        Organisation.objects.filter(public_id=organisation_public_id).first()
        if organisation_public_id is not None
        else None
    )
    audit_record(
        actor=actor,
        event=AuditEvent.ACCESS_DENIED,
        account=account,
        organisation=organisation,
        data={"reason": "not_member", "path": path[:500]},
    )


# --- API keys ---------------------------------------------------------------------------------


def _check_api_key_authority(by: OrganisationAccess | None, organisation: Organisation) -> None:
    """Refuse unless `by` (read again under the organisation's lock) may manage its keys."""
    if by is None:
        return
    if by.organisation.pk != organisation.pk:
        raise ApiKeyManagementDenied
    current = _current_access(by.membership.user, organisation)
    if current is None or not current.has_scope(Scope.API_KEYS_MANAGE):
        raise ApiKeyManagementDenied


def _api_key_data(api_key: OrganisationAPIKey) -> dict[str, Any]:
    return {
        "name": api_key.name,
        "prefix": api_key.prefix,
        "expires_at": api_key.expires_at,
    }


@transaction.atomic
def api_key_create(
    *,
    organisation: Organisation,
    name: str,
    actor: Actor,
    by: OrganisationAccess | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[OrganisationAPIKey, str]:
    """Create an API key for an organisation; return it with the key, shown only this once.

    :raises ApiKeyManagementDenied: if `by` may not manage the organisation's keys.
    """
    _lock_tenant(organisation)
    _check_api_key_authority(by, organisation)
    key, prefix, hashed = api_key_generate()
    api_key = OrganisationAPIKey.objects.create(
        organisation=organisation,
        name=name.strip()[:100],
        prefix=prefix,
        hashed_key=hashed,
        created_by=actor.user if isinstance(actor, UserActor) else None,
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        event=AuditEvent.API_KEY_CREATED,
        organisation=organisation,
        target=api_key,
        data=_api_key_data(api_key),
    )
    return api_key, key


@transaction.atomic
def api_key_revoke(
    *,
    api_key: OrganisationAPIKey,
    actor: Actor,
    as_of: dt.datetime,
    by: OrganisationAccess | None = None,
) -> OrganisationAPIKey:
    """Revoke a key: it stops working at once and stays listed, for the audit trail.

    :raises ApiKeyManagementDenied: if `by` may not manage the organisation's keys.
    :raises ApiKeyRevoked: if it was revoked already.
    """
    organisation = api_key.organisation
    _lock_tenant(organisation)
    _check_api_key_authority(by, organisation)
    api_key.refresh_from_db()
    if api_key.revoked_at is not None:
        raise ApiKeyRevoked
    api_key.revoked_at = as_of
    api_key.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        event=AuditEvent.API_KEY_REVOKED,
        organisation=organisation,
        target=api_key,
        data=_api_key_data(api_key),
    )
    return api_key


def api_key_used(*, api_key: OrganisationAPIKey, as_of: dt.datetime) -> None:
    """Note when a key was last used (at most every few minutes: not a write per request).

    Not audited: using a key changes nothing; what it is used for is audited by its service.
    """
    if api_key.last_used_at is None or as_of - api_key.last_used_at > dt.timedelta(minutes=5):
        OrganisationAPIKey.objects.filter(pk=api_key.pk).update(last_used_at=as_of)
        api_key.last_used_at = as_of


# --- Exports ------------------------------------------------------------------------------------

CSV_EXPORTS = frozenset({"organisation_accounts", "audit_log", "usage"})


@transaction.atomic
def csv_export_record(
    *,
    actor: Actor,
    export: str,
    query: str,
    account: Account | None = None,
    organisation: Organisation | None = None,
) -> None:
    """Audit a member's CSV download of a table of personal data (`export`, one of
    CSV_EXPORTS) with the filters it was asked with (`query`, a query string).

    One entry per download, written before the first row is sent: the rows are streamed, and a
    download cut short has still been asked for.
    """
    if export not in CSV_EXPORTS:
        raise ValueError(f"unknown export {export!r}")
    audit_record(
        actor=actor,
        event=AuditEvent.CSV_EXPORTED,
        account=account,
        organisation=organisation,
        data={"export": export, "query": query[:500]},
    )
