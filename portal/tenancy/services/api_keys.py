"""Writes for organisations' API keys: create, revoke and record use; each one audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.tenancy.exceptions import (
    ApiKeyManagementDenied,
    ApiKeyRevoked,
)
from portal.tenancy.models import (
    Organisation,
    OrganisationAPIKey,
)
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import (
    OrganisationAccess,
)
from portal.tenancy.services._common import _current_access, _lock_tenant
from portal.tenancy.tokens import api_key_generate


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
