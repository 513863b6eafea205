"""Writes for memberships: add, change role, remove; each one audited.

Services that change members take `by`, the acting person's access to the tenant, when the
change comes from the portal; staff (admin) and system callers pass `by=None` because their
authority was checked by Django permissions or is the system's own.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.tenancy.exceptions import (
    AlreadyMember,
    LastOwnerError,
)
from portal.tenancy.models import (
    Account,
    Membership,
    Organisation,
)
from portal.tenancy.roles import Role
from portal.tenancy.selectors import (
    TenantAccess,
)
from portal.tenancy.services._common import (
    Tenant,
    _check_may_grant,
    _lock_tenant,
    _one_tenant,
    _tenant_kwargs,
)
from portal.users.models import User


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
