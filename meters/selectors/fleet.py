"""Reads of the fleet: meters, registers, service points and the supplies on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db.models import QuerySet

from meters.models import (
    Meter,
    Register,
    ServicePoint,
    Supply,
)


def meter_get_by_serial(*, serial: str) -> Meter | None:
    return Meter.objects.filter(serial=serial).first()


def service_point_find(*, code_or_id: str) -> ServicePoint | None:
    """Return the service point with this code, else with this id (a code wins: codes may
    be digits)."""
    found = ServicePoint.objects.filter(code=code_or_id).first()
    if found is None and code_or_id.isdigit():
        found = ServicePoint.objects.filter(pk=int(code_or_id)).first()
    return found


def service_points_of_account(*, account_id: int) -> QuerySet[ServicePoint]:
    """Return the service points the account is (or was) supplied at."""
    return ServicePoint.objects.supplied_to(account_id).order_by("kind", "code")


def supplies_of_account(*, account_id: int, service_point_id: int | None = None) -> list[Supply]:
    qs = Supply.objects.for_account(account_id).order_by("start")
    if service_point_id is not None:
        qs = qs.filter(service_point_id=service_point_id)
    return list(qs)


def supply_periods(
    *, account_ids: Sequence[int]
) -> dict[tuple[int, int], list[tuple[dt.datetime, dt.datetime | None]]]:
    """The supply periods (start, end) of many accounts, per (account, service point)."""
    periods: dict[tuple[int, int], list[tuple[dt.datetime, dt.datetime | None]]] = {}
    rows = (
        Supply.objects.filter(account_id__in=list(account_ids))
        .order_by("start")
        .values_list("account_id", "service_point_id", "start", "end")
    )
    for account_id, sp_id, start, end in rows:
        periods.setdefault((account_id, sp_id), []).append((start, end))
    return periods


def register_for_meter(*, meter: Meter, code: str) -> Register | None:
    return Register.objects.filter(meter=meter, code=code).first()


def meters_of_account(*, account_id: int, as_of: dt.datetime) -> list[Meter]:
    """The meters installed now where the account is supplied now (with their last contact)."""
    # Plain SQL: built by the ORM (a DISTINCT over OR-joined installations) this costs more
    # CPU to compile than to run, on every visit to the account home (`make bench` web).
    return list(
        Meter.objects.raw(
            """
            SELECT m.* FROM meters_meter m
            WHERE EXISTS (
                SELECT 1 FROM meters_meterinstallation mi
                JOIN meters_supply sup ON sup.service_point_id = mi.service_point_id
                WHERE mi.meter_id = m.id AND sup.account_id = %(account)s
                  AND sup.start <= %(now)s AND (sup."end" IS NULL OR sup."end" > %(now)s)
                  AND mi.installed_at <= %(now)s
                  AND (mi.removed_at IS NULL OR mi.removed_at > %(now)s)
            )
            ORDER BY m.kind, m.serial
            """,
            {"account": account_id, "now": as_of},
        )
    )
