"""What the HTML and API base views share: sealing, scope lookup and tenant resolution.

Every customer-facing view resolves its tenant from the URL through these functions, so the
404-for-non-members and 403-for-missing-scope rules are written once.
"""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Mapping
from typing import Any, ClassVar

from allauth.mfa.utils import is_mfa_enabled

from portal.audit.actors import ApiKeyActor, UserActor
from portal.tenancy.models import Account, Organisation
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import (
    AccountAccess,
    OrganisationAccess,
    TenantAccess,
    account_access_for,
    account_ancestors,
    organisation_access_for,
    organisation_ancestors,
    organisations_requiring_mfa_below,
)
from portal.tenancy.services.access import access_denied_record, access_not_found_record
from portal.users.models import User


class TenantNotFound(Exception):
    """The URL names no tenant the user belongs to (rendered as 404)."""


# The classes allowed to define sealed methods, by identity: the bases in SEALING_MODULES.
_SEALING_CLASSES: set[type] = set()
_UNSAFE_HANDLERS = ("post", "put", "patch", "delete")


class SealedScopedMixin:
    """Refuse, at class creation, subclasses that could skip the tenant checks.

    Only the base classes defined in SEALING_MODULES may define the methods in
    `sealed_methods`; a subclass, or any mixin placed before a base, that defines one is
    refused. Concrete (non-`abstract`) classes must declare `required_scope`, and a scope for
    every write method they handle (`method_scopes`), so that a new POST handler never
    inherits a read scope by default.
    """

    SEALING_MODULES: ClassVar[frozenset[str]] = frozenset(
        {"portal.tenancy.views.base", "portal.tenancy.api.base"}
    )
    sealed_methods: ClassVar[tuple[str, ...]] = ()
    _sealing_base: ClassVar[bool] = True
    abstract: ClassVar[bool] = True
    # The scope needed for GET/HEAD/OPTIONS; `method_scopes` may ask more for other methods.
    required_scope: ClassVar[Scope | None] = None
    method_scopes: ClassVar[Mapping[str, Scope]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_sealing_base", False):
            if cls.__module__ not in SealedScopedMixin.SEALING_MODULES:
                raise TypeError(f"{cls.__qualname__} may not declare itself a sealing base")
            _SEALING_CLASSES.add(cls)
            return
        for name in cls.sealed_methods:
            owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
            if owner is not None and owner not in _SEALING_CLASSES:
                raise TypeError(
                    f"{cls.__qualname__} may not override {name}() (defined by "
                    f"{owner.__qualname__}); tenant scoping would be bypassed. Use "
                    "get_scoped_queryset() or a handler method instead."
                )
        if cls.__dict__.get("abstract", False):
            return
        if not isinstance(cls.required_scope, Scope):
            raise TypeError(f"{cls.__qualname__} must declare required_scope")
        for handler in _UNSAFE_HANDLERS:
            if hasattr(cls, handler) and handler.upper() not in cls.method_scopes:
                raise TypeError(
                    f"{cls.__qualname__} handles {handler.upper()}: declare its scope in "
                    "method_scopes"
                )

    @classmethod
    def scope_for(cls, method: str) -> Scope:
        """Return the scope a request with this HTTP method needs."""
        scope = cls.method_scopes.get(method.upper())
        if scope is not None:
            return scope
        if cls.required_scope is None:
            raise TypeError(f"{cls.__qualname__} has no required_scope")
        return cls.required_scope


def tenant_uuid(kwargs: Mapping[str, Any], name: str) -> uuid.UUID:
    """Read a tenant's public id from the URL kwargs.

    :raises TenantNotFound: if it is missing or malformed.
    """
    value = kwargs.get(name)
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise TenantNotFound from None


def resolve_account(user: User, kwargs: Mapping[str, Any]) -> AccountAccess:
    """Return the user's access to the account in the URL.

    :raises TenantNotFound: for non-members and unknown accounts alike.
    """
    access = account_access_for(user=user, account_public_id=tenant_uuid(kwargs, "account_id"))
    if access is None:
        raise TenantNotFound
    return access


def resolve_organisation(user: User, kwargs: Mapping[str, Any]) -> OrganisationAccess:
    """Return the user's access to the organisation in the URL.

    :raises TenantNotFound: for non-members and unknown organisations alike.
    """
    access = organisation_access_for(
        user=user, organisation_public_id=tenant_uuid(kwargs, "org_id")
    )
    if access is None:
        raise TenantNotFound
    return access


class AccountTenantMixin:
    """Resolve /…/<account_id>/… for the HTML and API account bases."""

    account: Account

    def _resolve(self, user: User, kwargs: Mapping[str, Any]) -> AccountAccess:
        access = resolve_account(user, kwargs)
        self.account = access.account
        return access


class OrganisationTenantMixin:
    """Resolve /…/<org_id>/… for the HTML and API organisation bases."""

    organisation: Organisation

    def _resolve(self, user: User, kwargs: Mapping[str, Any]) -> OrganisationAccess:
        access = resolve_organisation(user, kwargs)
        self.organisation = access.organisation
        return access


_SEALING_CLASSES.update({SealedScopedMixin, AccountTenantMixin, OrganisationTenantMixin})


def record_denial(*, actor: UserActor, access: TenantAccess, scope: Scope, path: str) -> None:
    """Audit a member's request for a scope their role lacks."""
    if isinstance(access, AccountAccess):
        access_denied_record(actor=actor, scope=scope, path=path, account=access.account)
    elif isinstance(access, OrganisationAccess):
        access_denied_record(actor=actor, scope=scope, path=path, organisation=access.organisation)


def record_not_found(*, actor: UserActor, kwargs: Mapping[str, Any], path: str) -> None:
    """Audit a request for an account or organisation the user is not a member of (or that
    does not exist: the 404 is the same, and so is this call)."""
    access_not_found_record(
        actor=actor,
        path=path,
        account_public_id=_uuid_or_none(kwargs, "account_id"),
        organisation_public_id=_uuid_or_none(kwargs, "org_id"),
    )


def record_key_denial(
    *, actor: ApiKeyActor, organisation: Organisation, scope: Scope, path: str
) -> None:
    """Audit a request an organisation's API key lacks the scope for."""
    access_denied_record(
        actor=actor, scope=scope, path=path, organisation=organisation, reason="api_key"
    )


def _uuid_or_none(kwargs: Mapping[str, Any], name: str) -> uuid.UUID | None:
    if name not in kwargs:
        return None
    try:
        return tenant_uuid(kwargs, name)
    except TenantNotFound:
        return None


def mfa_required_but_missing(user: User, access: TenantAccess) -> bool:
    """True if an organisation above the tenant asks its owners and managers for MFA and the
    user, an owner or manager here, has none."""
    if not access.role.at_least(Role.MANAGER):
        return False
    organisations: list[Organisation]
    if isinstance(access, AccountAccess):
        organisations = account_ancestors(account=access.account)
    elif isinstance(access, OrganisationAccess):
        organisations = [
            *organisation_ancestors(organisation=access.organisation),
            access.organisation,
        ]
    else:
        organisations = []
    if not any(org.require_mfa for org in organisations):
        return False
    return not is_mfa_enabled(user)


def mfa_withheld(user: User, access: TenantAccess) -> list[Organisation]:
    """The organisations beneath an organisation page whose data the reader may not see there:
    each asks its owners and managers for two-factor authentication, the reader is one of them
    (by a role from above or their own) and has none. A page over the subtree leaves them and
    everything beneath them out, and says so; their own pages redirect as usual."""
    if not isinstance(access, OrganisationAccess):
        return []
    candidates = organisations_requiring_mfa_below(organisation=access.organisation)
    if not candidates or is_mfa_enabled(user):
        return []
    withheld: list[Organisation] = []
    for organisation in candidates:  # topmost first: one withheld covers those beneath it
        if any(organisation.path.startswith(done.path) for done in withheld):
            continue
        below = organisation_access_for(user=user, organisation_public_id=organisation.public_id)
        if below is not None and below.role.at_least(Role.MANAGER):
            withheld.append(organisation)
    return withheld


def withheld_headers(withheld: list[Organisation]) -> dict[str, str]:
    """The headers an answer over a subtree carries when it leaves organisations out: a CSV
    or a JSON answer has no banner to say so."""
    if not withheld:
        return {}
    return {
        "X-Withheld-Organisations": ",".join(str(o.public_id) for o in withheld),
        "X-Withheld-Reason": "two-factor authentication required",
    }


def tenant_time_zone(access: TenantAccess) -> zoneinfo.ZoneInfo:
    """The zone a tenant's pages and API answers show times in: the account's, or the
    organisation's for organisation pages."""
    if isinstance(access, AccountAccess):
        return zoneinfo.ZoneInfo(access.account.time_zone)
    if isinstance(access, OrganisationAccess):
        return zoneinfo.ZoneInfo(access.organisation.time_zone)
    raise TypeError(type(access))
