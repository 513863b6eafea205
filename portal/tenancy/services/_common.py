"""Helpers shared by the tenancy services: ids, the tree lock, tenant locks and authority checks."""

from __future__ import annotations

from typing import Any

from django.db import connection

from portal.tenancy.exceptions import (
    MemberManagementDenied,
)
from portal.tenancy.models import (
    Account,
    Organisation,
)
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import (
    AccountAccess,
    OrganisationAccess,
    TenantAccess,
    account_access_for_account,
    organisation_access_for,
)
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


def _one_tenant(account: Account | None, organisation: Organisation | None) -> Tenant:
    if (account is None) == (organisation is None):
        raise ValueError("give exactly one of account and organisation")
    return account if account is not None else organisation  # type: ignore[return-value]
