"""Writes for invitations: create, email, accept, revoke and expire; each one audited."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.tenancy.exceptions import (
    AlreadyMember,
    InvitationEmailMismatch,
    InvitationExpired,
    InvitationInviterLostAuthority,
    InvitationNotPending,
    MemberManagementDenied,
)
from portal.tenancy.models import (
    Account,
    Invitation,
    Membership,
    Organisation,
)
from portal.tenancy.roles import Role
from portal.tenancy.selectors import (
    TenantAccess,
    invitation_from_token,
    invitation_link,
)
from portal.tenancy.services._common import (
    _check_authority,
    _check_may_grant,
    _current_access,
    _lock_tenant,
    _one_tenant,
    _tenant_kwargs,
)
from portal.users.models import User


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
