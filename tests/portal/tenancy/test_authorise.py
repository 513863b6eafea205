"""portal.tenancy.authorise: the one sequence both base views (HTML and API) run."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.test import RequestFactory

from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.authorise import (
    MfaMissing,
    NotSignedIn,
    ScopeMissing,
    TenantHidden,
    authorise,
)
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.scoping import resolve_account, resolve_organisation
from portal.tenancy.selectors import AccountAccess
from portal.users.models import User
from tests.factories import make_account, make_membership, make_organisation, make_user

pytestmark = pytest.mark.django_db


def _request(user: User | AnonymousUser) -> HttpRequest:
    request = RequestFactory().get("/somewhere/")
    request.user = user
    return request


def test_a_member_with_the_scope_gets_the_access_and_the_tenants_time_zone() -> None:
    account = make_account("Home")
    user = make_user()
    make_membership(user, Role.OWNER, account=account)
    granted = authorise(
        request=_request(user),
        kwargs={"account_id": account.public_id},
        resolve=resolve_account,
        scope=Scope.BILLING_TOPUP,
    )
    assert granted.user == user
    assert isinstance(granted.access, AccountAccess) and granted.access.account == account
    assert granted.withheld == []
    assert granted.time_zone.key == account.time_zone


def test_nobody_signed_in_is_refused_before_anything_is_looked_up() -> None:
    inactive = make_user()
    inactive.is_active = False
    before = AuditLogEntry.objects.count()
    for user in (AnonymousUser(), inactive):
        with pytest.raises(NotSignedIn):
            authorise(
                request=_request(user),
                kwargs={"account_id": uuid.uuid4()},
                resolve=resolve_account,
                scope=Scope.METERS_READ,
            )
    assert AuditLogEntry.objects.count() == before


def test_another_tenant_and_a_missing_one_are_hidden_alike_and_audited() -> None:
    other = make_account("Not yours")
    user = make_user()
    for account_id in (other.public_id, uuid.uuid4()):
        with pytest.raises(TenantHidden):
            authorise(
                request=_request(user),
                kwargs={"account_id": account_id},
                resolve=resolve_account,
                scope=Scope.METERS_READ,
            )
    entries = AuditLogEntry.objects.filter(event_type=AuditEvent.ACCESS_DENIED)
    assert [entry.data["reason"] for entry in entries] == ["not_member", "not_member"]


def test_a_member_without_the_scope_is_refused_and_audited() -> None:
    account = make_account("Home")
    user = make_user()
    make_membership(user, Role.VIEWER, account=account)
    with pytest.raises(ScopeMissing):
        authorise(
            request=_request(user),
            kwargs={"account_id": account.public_id},
            resolve=resolve_account,
            scope=Scope.BILLING_TOPUP,
        )
    (entry,) = AuditLogEntry.objects.filter(event_type=AuditEvent.ACCESS_DENIED)
    assert entry.data["scope"] == str(Scope.BILLING_TOPUP) and "reason" not in entry.data


def test_an_organisation_that_asks_for_two_factors_refuses_a_manager_without_one() -> None:
    organisation = make_organisation("Strict")
    organisation.require_mfa = True
    organisation.save()
    user = make_user()
    make_membership(user, Role.MANAGER, organisation=organisation)
    with pytest.raises(MfaMissing) as refused:
        authorise(
            request=_request(user),
            kwargs={"org_id": organisation.public_id},
            resolve=resolve_organisation,
            scope=Scope.METERS_READ,
        )
    assert "two-factor" in refused.value.message
