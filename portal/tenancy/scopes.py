"""Scopes: what a role may do. Views and services ask for scopes, never for roles."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from portal.tenancy.roles import Role


class Scope(StrEnum):
    METERS_READ = "meters:read"
    # Send readings for the tenant's own meters: file uploads, API keys for head-end systems.
    METERS_IMPORT = "meters:import"
    # Mark a meter event (leak, tamper, battery, ...) as seen and handled: the household's or
    # the portfolio's decision-makers, not everyone who can see the alert.
    ALERTS_ACKNOWLEDGE = "alerts:acknowledge"
    API_KEYS_MANAGE = "api_keys:manage"
    BILLING_READ = "billing:read"
    BILLING_TOPUP = "billing:topup"
    EXPORT = "export"
    BILLING_MANAGE = "billing:manage"
    MEMBERS_MANAGE = "members:manage"
    AUDIT_READ = "audit:read"
    TENANT_MANAGE = "tenant:manage"


_VIEWER = frozenset({Scope.METERS_READ, Scope.BILLING_READ})
_PAYER = _VIEWER | {Scope.BILLING_TOPUP, Scope.EXPORT}
_MANAGER = _PAYER | {
    Scope.BILLING_MANAGE,
    Scope.MEMBERS_MANAGE,
    Scope.AUDIT_READ,
    Scope.METERS_IMPORT,
    Scope.API_KEYS_MANAGE,
    Scope.ALERTS_ACKNOWLEDGE,
}
# Owners alone may change the tenant itself and grant or take away ownership.
_OWNER = _MANAGER | {Scope.TENANT_MANAGE}

ROLE_SCOPES: MappingProxyType[Role, frozenset[Scope]] = MappingProxyType(
    {
        Role.OWNER: _OWNER,
        Role.MANAGER: _MANAGER,
        Role.PAYER: _PAYER,
        Role.VIEWER: _VIEWER,
    }
)


def scopes_for(role: Role) -> frozenset[Scope]:
    """Return the scopes a role grants."""
    return ROLE_SCOPES[role]


# What an organisation's API key may do, within the organisation's subtree: a head-end system
# sends readings and reads back its batches, nothing else.
API_KEY_SCOPES: frozenset[Scope] = frozenset({Scope.METERS_READ, Scope.METERS_IMPORT})
