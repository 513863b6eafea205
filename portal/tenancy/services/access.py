"""Audit records of access: refused requests (403 and 404) and CSV downloads of personal data."""

from __future__ import annotations

import uuid

from django.db import transaction

from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.tenancy.models import (
    Account,
    Organisation,
)
from portal.tenancy.scopes import Scope

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
