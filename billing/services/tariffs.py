"""Tariffs for staff: price lists, their versions, assignments to accounts, the holiday calendar.

A version that has already priced a charge is history: its prices cannot change any more, only
its end (valid_to) may be set, and new prices are a new version. Structures are validated by
billing.pricing.parse_structure before they are stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils.translation import gettext as _

from billing.exceptions import BillingError
from billing.models import DailyCharge, Holiday, Tariff, TariffAssignment, TariffVersion
from billing.pricing import TariffError, parse_structure
from meters.models import ServicePoint
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes
from portal.tenancy.models import Account


def _describe(value: Any) -> Any:
    return str(value) if isinstance(value, models.Model | dt.date) else value


def _save(instance: models.Model, changes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate and write; return the audit diff (None for a creation, {} for no change)."""
    diff: dict[str, Any] | None = None
    if changes is not None:
        diff = apply_changes(
            instance,
            changes,
            allowed={f.name for f in instance._meta.concrete_fields},
            describe=_describe,
        )
        if not diff:
            return diff
    instance.full_clean()
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as error:  # the exclusion constraints: overlapping periods
        raise BillingError(_("The period overlaps another one.")) from error
    return diff


@transaction.atomic
def tariff_save(
    *, instance: Tariff, actor: Actor, changes: Mapping[str, Any] | None = None
) -> Tariff:
    """Create (changes=None) or change a tariff's name, code or contract organisation.

    :raises BillingError: when the kind, currency or unit of a tariff already in use changes.
    """
    if changes and instance.pk and TariffAssignment.objects.filter(tariff=instance).exists():
        fixed = {"kind", "currency", "quantity_unit"} & set(changes)
        if any(changes[name] != getattr(instance, name) for name in fixed):
            raise BillingError(
                _("Kind, currency and unit of a tariff in use cannot change; make a new tariff.")
            )
    diff = _save(instance, changes)
    if diff == {}:
        return instance
    audit_record(
        actor=actor,
        event=AuditEvent.TARIFF_SAVED,
        organisation=instance.organisation,
        target=instance,
        data={"name": instance.name, **({"changes": diff} if diff else {})},
    )
    return instance


@transaction.atomic
def tariff_version_save(
    *, instance: TariffVersion, actor: Actor, changes: Mapping[str, Any] | None = None
) -> TariffVersion:
    """Create or change a version of prices.

    :raises ValidationError: for a structure that cannot be priced.
    :raises BillingError: for an overlapping period, or new prices on a version already used.
    """
    repriced = bool(changes and set(changes) - {"valid_to"})
    if repriced and DailyCharge.objects.filter(tariff_version_id=instance.pk).exists():
        raise BillingError(
            _(
                "These prices have already been charged; set an end date and add a new "
                "version instead."
            )
        )
    structure = changes.get("structure", instance.structure) if changes else instance.structure
    try:
        parse_structure(structure)
    except TariffError as error:
        raise ValidationError({"structure": str(error)}) from error
    diff = _save(instance, changes)
    if diff == {}:
        return instance
    audit_record(
        actor=actor,
        event=AuditEvent.TARIFF_VERSION_SAVED,
        organisation=instance.tariff.organisation,
        target=instance,
        data={
            "name": instance.tariff.name,
            "valid_from": instance.valid_from.isoformat(),
            **({"changes": diff} if diff else {}),
        },
    )
    return instance


@transaction.atomic
def tariff_assign(
    *,
    account: Account,
    service_point: ServicePoint,
    tariff: Tariff,
    valid_from: dt.date,
    actor: Actor,
    valid_to: dt.date | None = None,
) -> TariffAssignment:
    """Put an account on a tariff at a service point from a local day on (up to `valid_to`,
    exclusive, when the supply's end is known); an open assignment there ends that day.

    :raises BillingError: when the tariff does not fit (kind, currency, another organisation's
        contract) or the day is before the current assignment's start.
    """
    if tariff.kind != service_point.kind:
        raise BillingError(_("The tariff is for another kind of utility."))
    if valid_to is not None and valid_to <= valid_from:
        raise BillingError(_("A tariff ends after the day it starts."))
    if tariff.currency != account.currency:
        raise BillingError(_("The tariff is in another currency than the account."))
    if tariff.organisation_id is not None:
        ancestry = account.organisation.ancestor_ids if account.organisation else []
        if tariff.organisation_id not in ancestry:
            raise BillingError(_("This contract tariff belongs to another organisation."))
    current = (
        TariffAssignment.objects.select_for_update()
        .filter(account=account, service_point=service_point, valid_to__isnull=True)
        .first()
    )
    if current is not None:
        if current.valid_from >= valid_from:
            raise BillingError(_("The new tariff must start after the current one."))
        current.valid_to = valid_from
        current.save(update_fields=["valid_to"])
    assignment = TariffAssignment(
        account=account,
        service_point=service_point,
        tariff=tariff,
        valid_from=valid_from,
        valid_to=valid_to,
    )
    _save(assignment, None)
    audit_record(
        actor=actor,
        event=AuditEvent.TARIFF_ASSIGNED,
        account=account,
        target=assignment,
        data={
            "name": tariff.name,
            "number": account.number,
            "service_point": service_point.code,
            "valid_from": valid_from.isoformat(),
            **({"valid_to": valid_to.isoformat()} if valid_to else {}),
        },
    )
    return assignment


@transaction.atomic
def holiday_save(
    *, instance: Holiday, actor: Actor, changes: Mapping[str, Any] | None = None
) -> Holiday:
    """Add or rename a public holiday (no disconnections on it)."""
    diff = _save(instance, changes)
    if diff == {}:
        return instance
    audit_record(
        actor=actor,
        event=AuditEvent.HOLIDAY_SAVED,
        target=instance,
        data={"day": instance.day.isoformat(), "name": instance.name},
    )
    return instance


@transaction.atomic
def holiday_delete(*, instance: Holiday, actor: Actor) -> None:
    """Remove a public holiday from the calendar."""
    audit_record(
        actor=actor,
        event=AuditEvent.HOLIDAY_DELETED,
        target=instance,
        data={"day": instance.day.isoformat(), "name": instance.name},
    )
    instance.delete()
