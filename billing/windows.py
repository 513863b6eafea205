"""Tariff windows: which tariff version prices which local days of a supply. The one rule the
bill, the daily prepaid charge and the usage page's costs share.

- A window is the local days [start, end) on which one tariff version is in force under one
  assignment of the account at a service point: the intersection of the assignment's and the
  version's validity (both half-open local days, never hours: a tariff changes at a local
  midnight, so every hour of a day has the same version).
- A tariff in another currency than the account's, or for another utility kind than the
  service point's, prices nothing: the bill refuses such an account, and the charge and the
  page price nothing under it. (tariff_assign refuses both, so only data written around it has
  them.)
- Days of an assignment that no version covers are a gap: the bill refuses the account; the
  charge and the page leave those days unpriced.
- Within a window the band of each local hour is billing.pricing.band_at: the hour's own start
  (its weekday and wall-clock hour, so both 01:00s of a day the clocks go back are the same
  band, and the hour the clocks skip has no band because it has no consumption).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from billing.models import TariffAssignment, TariffVersion


@dataclass(frozen=True)
class TariffWindow:
    """Local days [start, end) of one supply priced by one tariff version."""

    account_id: int
    service_point_id: int
    tariff_id: int
    tariff_name: str
    kind: str  # the tariff's utility kind (the revenue ledger it posts to)
    unit: str  # the tariff's quantity unit (kWh, m3)
    currency: str
    version: TariffVersion
    start: dt.date
    end: dt.date
    time_zone: str  # the service point's (its daily rollups are its local days)


@dataclass
class TariffWindows:
    """Windows per (account, service point) in time order, and the accounts with a problem:
    a tariff that cannot price them, or days of an assignment without a version."""

    by_supply: dict[tuple[int, int], list[TariffWindow]] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)


def tariff_windows(
    *,
    account_ids: Sequence[int],
    first: dt.date,
    stop: dt.date,
    service_point_id: int | None = None,
) -> TariffWindows:
    """The tariff windows of the accounts' supplies over the local days [first, stop), in two
    queries; with `service_point_id`, of that service point only."""
    assignments = TariffAssignment.objects.filter(
        account_id__in=list(account_ids), valid_from__lt=stop
    ).exclude(valid_to__lte=first)
    if service_point_id is not None:
        assignments = assignments.filter(service_point_id=service_point_id)
    rows = list(
        assignments.values_list(
            "account_id",
            "service_point_id",
            "tariff_id",
            "valid_from",
            "valid_to",
            "tariff__name",
            "tariff__kind",
            "tariff__quantity_unit",
            "tariff__currency",
            "account__currency",
            "service_point__kind",
            "service_point__time_zone",
        ).order_by("account_id", "service_point_id", "valid_from")
    )
    versions: dict[int, list[TariffVersion]] = defaultdict(list)
    for version in (
        TariffVersion.objects.filter(tariff_id__in={row[2] for row in rows}, valid_from__lt=stop)
        .exclude(valid_to__lte=first)
        .order_by("tariff_id", "valid_from")
    ):
        versions[version.tariff_id].append(version)
    found = TariffWindows()
    for row in rows:
        account_id, sp_id, tariff_id, valid_from, valid_to, name, kind, unit, currency = row[:9]
        account_currency, sp_kind, time_zone = row[9:]
        if currency != account_currency:
            found.problems[account_id] = f"tariff {tariff_id} is in {currency}"
            continue
        if kind != sp_kind:
            found.problems[account_id] = f"tariff {tariff_id} is for {kind}"
            continue
        a, b = max(valid_from, first), min(valid_to or stop, stop)
        covered = 0
        for version in versions[tariff_id]:
            start, end = max(a, version.valid_from), min(b, version.valid_to or b)
            if start < end:
                found.by_supply.setdefault((account_id, sp_id), []).append(
                    TariffWindow(
                        account_id,
                        sp_id,
                        tariff_id,
                        name,
                        kind,
                        unit,
                        currency,
                        version,
                        start,
                        end,
                        time_zone,
                    )
                )
                covered += (end - start).days
        if covered != (b - a).days:
            found.problems[account_id] = f"tariff {tariff_id} has no prices for some days"
    return found


def window_on(windows: Sequence[TariffWindow], day: dt.date) -> TariffWindow | None:
    """The window in force on a local day, if any."""
    return next((w for w in windows if w.start <= day < w.end), None)
