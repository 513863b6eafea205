"""Writes for accounts: create (numbered), update and staff views; each one audited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction

from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes
from portal.tenancy.models import (
    Account,
    Organisation,
)
from portal.tenancy.services._common import _audit_value


def _luhn_digit(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def _next_account_number() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('tenancy_account_number_seq')")
        (value,) = cursor.fetchone()
    base = str(value)
    # A check digit catches the typos people make when reading a number out over the phone.
    return base + _luhn_digit(base)


@transaction.atomic
def account_create(
    *,
    name: str,
    payment_mode: str,
    currency: str,
    time_zone: str,
    actor: Actor,
    organisation: Organisation | None = None,
    number: str | None = None,
) -> Account:
    """Create an account; without `number` the next number with a check digit is assigned.

    :raises ValidationError: for an unknown payment mode, currency, time zone or a taken number.
    """
    account = Account(
        name=name,
        payment_mode=payment_mode,
        currency=currency,
        time_zone=time_zone,
        organisation=organisation,
        number=number or _next_account_number(),
    )
    account.full_clean()
    account.save(force_insert=True)
    audit_record(
        actor=actor,
        event=AuditEvent.ACCOUNT_CREATED,
        account=account,
        target=account,
        data={
            "number": account.number,
            "name": name,
            "payment_mode": payment_mode,
            "currency": currency,
            "time_zone": time_zone,
            "organisation": organisation.name if organisation else None,
        },
    )
    return account


_ACCOUNT_FIELDS = frozenset(
    {"name", "payment_mode", "currency", "time_zone", "organisation", "closed_at"}
)


@transaction.atomic
def account_update(*, account: Account, changes: Mapping[str, Any], actor: Actor) -> Account:
    """Change an account's details, its organisation, or close it.

    :raises ValidationError: for invalid values.
    """
    diff = apply_changes(account, changes, allowed=_ACCOUNT_FIELDS, describe=_audit_value)
    if not diff:
        return account
    account.full_clean()
    account.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.ACCOUNT_UPDATED,
        account=account,
        target=account,
        data={"number": account.number, "name": account.name, "changes": diff},
    )
    return account


@transaction.atomic
def account_staff_view_record(*, account: Account, actor: Actor) -> None:
    """Audit a member of staff opening an account's record: its holders' personal data."""
    audit_record(
        actor=actor,
        event=AuditEvent.ACCOUNT_VIEWED_BY_STAFF,
        account=account,
        target=account,
        data={"number": account.number, "name": account.name},
    )
