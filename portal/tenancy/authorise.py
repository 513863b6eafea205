"""The one authorisation sequence of every tenant view, HTML or API.

In order: a signed-in, active user; the tenant from the URL's public id, resolved through the
user's memberships (unknown and foreign tenants alike are hidden: 404, and the probe is
audited); the view's scope in the membership's role (else 403, audited); the organisation's
two-factor requirement for owners and managers; and the organisations beneath the tenant that
stay withheld without a second factor. The base views (portal.tenancy.views.base,
portal.tenancy.api.base) call authorise() and only translate its refusals into their own
responses: a login redirect or a 404 for a missing user, 404, 403, and a redirect to the
two-factor setup or a 403 with the reason.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _

from portal.audit.actors import UserActor
from portal.tenancy.models import Organisation
from portal.tenancy.scopes import Scope
from portal.tenancy.scoping import (
    TenantNotFound,
    mfa_required_but_missing,
    mfa_withheld,
    record_denial,
    record_not_found,
    tenant_time_zone,
)
from portal.tenancy.selectors import TenantAccess
from portal.users.models import User


class Refusal(Exception):
    """The request may not go on; the subclass says why."""


class NotSignedIn(Refusal):
    """No active user is signed in."""


class TenantHidden(Refusal):
    """The tenant does not exist or the user is not a member of it: answered as not found."""


class ScopeMissing(Refusal):
    """A member whose role lacks the view's scope: answered as forbidden."""


class MfaMissing(Refusal):
    """The organisation asks this member to use two-factor authentication first."""

    def __init__(self) -> None:
        self.message = _(
            "This organisation asks owners and managers to use two-factor authentication."
        )
        super().__init__(self.message)


@dataclass(frozen=True)
class Authorisation:
    """What a view may act on: the user, their access to the tenant, the organisations
    withheld beneath it for want of a second factor, and the tenant's time zone."""

    user: User
    access: TenantAccess
    withheld: list[Organisation]
    time_zone: zoneinfo.ZoneInfo


def authorise(
    *,
    request: HttpRequest,
    kwargs: Mapping[str, Any],
    resolve: Callable[[User, Mapping[str, Any]], TenantAccess],
    scope: Scope,
) -> Authorisation:
    """Authorise `request` (Django's, not DRF's wrapper) for `scope` on the tenant named by
    the URL's `kwargs`, resolved by `resolve` (the view's tenant mixin).

    :raises NotSignedIn, TenantHidden, ScopeMissing, MfaMissing: refusals, already audited
        where the house audits them (a hidden tenant, a missing scope).
    """
    user = request.user
    if not isinstance(user, User) or not user.is_active:
        raise NotSignedIn
    try:
        access = resolve(user, kwargs)
    except TenantNotFound:
        record_not_found(actor=UserActor.from_request(request), kwargs=kwargs, path=request.path)
        raise TenantHidden from None
    if not access.has_scope(scope):
        record_denial(
            actor=UserActor.from_request(request), access=access, scope=scope, path=request.path
        )
        raise ScopeMissing
    if mfa_required_but_missing(user, access):
        raise MfaMissing
    return Authorisation(
        user=user,
        access=access,
        withheld=mfa_withheld(user, access),
        time_zone=tenant_time_zone(access),
    )
