from __future__ import annotations

import itertools

import pytest

from portal.tenancy.roles import Role
from portal.tenancy.scopes import ROLE_SCOPES, Scope, scopes_for

ORDER = sorted(Role, key=lambda role: role.value)  # most powerful first


def test_every_role_has_scopes() -> None:
    assert set(ROLE_SCOPES) == set(Role)


@pytest.mark.parametrize(("higher", "lower"), list(itertools.pairwise(ORDER)))
def test_each_role_includes_the_scopes_of_the_next_lower_role(higher: Role, lower: Role) -> None:
    assert scopes_for(higher) >= scopes_for(lower)
    assert scopes_for(higher) != scopes_for(lower), "a role must add something"


def test_roles_are_integers_with_gaps() -> None:
    values = [role.value for role in ORDER]
    assert values == [100, 200, 300, 400]


def test_viewer_reads_but_does_not_pay_or_manage() -> None:
    viewer = scopes_for(Role.VIEWER)
    assert {Scope.METERS_READ, Scope.BILLING_READ} <= viewer
    assert Scope.BILLING_TOPUP not in viewer
    assert Scope.MEMBERS_MANAGE not in viewer


def test_only_owners_manage_the_tenant_itself() -> None:
    assert [role for role in Role if Scope.TENANT_MANAGE in scopes_for(role)] == [Role.OWNER]


def test_every_scope_is_granted_to_the_owner() -> None:
    assert scopes_for(Role.OWNER) == frozenset(Scope)


def test_api_names_round_trip() -> None:
    for role in Role:
        assert Role.from_api_name(role.api_name) is role
    with pytest.raises(ValueError, match="unknown role"):
        Role.from_api_name("admin")
