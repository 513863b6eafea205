"""Supplies of a service point, and the commands (valve, relay) sent to its meter."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction

from meters.ingest import pipeline
from meters.ingest import sql as q
from meters.models import (
    MeterCommand,
    ServicePoint,
    Supply,
)
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes
from portal.tenancy.models import Account

logger = logging.getLogger(__name__)


@transaction.atomic
def meter_command_create(
    *, meter_id: int, command: str, reason: str, idempotency_key: str, actor: Actor
) -> MeterCommand:
    """Queue a command for a meter's head-end; the same key again returns the first command."""
    existing = MeterCommand.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    order = MeterCommand.objects.create(
        meter_id=meter_id,
        command=command,
        reason=reason[:300],
        idempotency_key=idempotency_key,
        requested_by_label=actor.label,
    )
    order.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.METER_COMMAND_CREATED,
        target=order,
        data={"command": command, "meter": order.meter.serial, "reason": reason[:300]},
    )
    return order


# --- Supplies and the fleet --------------------------------------------------------------


@transaction.atomic
def supply_start(
    *,
    account: Account,
    service_point: ServicePoint,
    start: dt.datetime,
    actor: Actor,
    end: dt.datetime | None = None,
) -> Supply:
    """Record a move-in (and optionally the move-out) of an account at a service point.

    :raises ValidationError: if it overlaps another supply there.
    """
    supply = Supply(account=account, service_point=service_point, start=start, end=end)
    supply.full_clean()
    supply.save()
    audit_record(
        actor=actor,
        event=AuditEvent.SUPPLY_STARTED,
        account=account,
        target=supply,
        data={"service_point": service_point.code, "start": start, "end": end},
    )
    _refresh_service_point(service_point.pk, start, end)
    return supply


@transaction.atomic
def supply_update(*, supply: Supply, changes: Mapping[str, Any], actor: Actor) -> Supply:
    """Change a supply's dates (a move-out); rollups are re-attributed for the changed span."""
    before = (supply.start, supply.end)
    diff = apply_changes(supply, changes, allowed={"start", "end"})
    if not diff:
        return supply
    supply.full_clean()
    supply.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.SUPPLY_UPDATED,
        account=supply.account,
        target=supply,
        data={"service_point": supply.service_point.code, "changes": diff},
    )
    starts = [t for t in (before[0], supply.start) if t is not None]
    ends = [t for t in (before[1], supply.end) if t is not None]
    _refresh_service_point(supply.service_point_id, min(starts), max(ends) if ends else None)
    return supply


def _refresh_service_point(sp_id: int, start: dt.datetime, end: dt.datetime | None) -> None:
    """Recompute a service point's rollups over a span (supply changes re-attribute them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE m_aff ON COMMIT DROP AS "
            "SELECT r.id AS register_id, %s::timestamptz AS lo, "
            "coalesce(%s::timestamptz, now() + interval '1 day') AS hi "
            "FROM meters_meterinstallation mi JOIN meters_register r ON r.meter_id = mi.meter_id "
            "WHERE mi.service_point_id = %s",
            [start, end, sp_id],
        )
    pipeline.refresh_rollups(dict(q.PARAMS))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS m_aff, m_sp, m_hours, m_hday, m_days")
