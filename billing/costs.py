"""What consumption costs, computed once: each local day of a supply priced and rounded on its
own, then summed.

The usage page (any range, resolution and its CSV), the account home's bill to date, the daily
prepaid charge and the postpaid bill all get their money from here, so a day has one figure
wherever a person sees it (tests/consistency holds them to it).

Rules, each decided here once:
- **The day is the unit of rounding.** A local day of one supply (account, service point) is
  priced by billing.pricing with the tariff version in force that day: every line rounded half
  up to the minor unit, the day's tax rounded once. A week, a month and a bill are sums of days;
  an interval shorter than a day gets a share of its day (below), and the shares of a day add
  up to it exactly.
- **Import and export are apart.** A day's *charge* is its consumption lines and standing
  charge with their tax; its *credit* is its export at the version's export rate (untaxed).
  They are never netted into "consumption": the ledger posts them as two entries and the pages
  show two series.
- **Tiers count from the 1st.** A day's tiers start from the account's imported consumption at
  the service point since the first of its local month, read from the rollups, whatever was
  charged or billed before (an account charged from the 14th counts the 13 days before).
- **Days are local to the account**, and a day's consumption is the hourly rollups that start
  in it (the same hours whoever asks).
- **The standing charge of a day** belongs to the supply that holds the service point at the
  day's local midnight (a move day is paid once, by the leaving occupant), and is due once the
  day is over: today costs its consumption so far.
- **Shares of a day** (hours, quarter hours): the charge in proportion to each hour's exact
  consumption cost, the standing charge spread evenly over the day's hours; the credit in
  proportion to each hour's export; largest remainder, so the shares sum to the day.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from billing.pricing import (
    HourUsage,
    Line,
    Segment,
    VersionLike,
    exact_hour_costs,
    price,
    structure_of,
)
from billing.selectors import hourly_usage
from billing.windows import tariff_windows
from meters.selectors.fleet import service_points_of_account, supplies_of_account
from portal.lib.periods import local_midnight, month_start


@dataclass(frozen=True)
class Window:
    """Local days [start, end) of one supply priced by one tariff version."""

    version: VersionLike
    start: dt.date
    end: dt.date


@dataclass(frozen=True)
class HourShare:
    """One hour's part of its day: what it used and exported, and its share of the day's
    charge and credit (minor units)."""

    start: dt.datetime  # aware, in the account's time zone
    quantity: int
    exported: int
    charge: int
    credit: int


@dataclass(frozen=True)
class DayCost:
    """One local day of one supply, priced and rounded."""

    day: dt.date
    version: VersionLike
    lines: tuple[Line, ...]
    imported: int  # base units
    exported: int
    estimated: int
    standing: bool
    charge: int  # minor units: consumption and standing lines with their tax
    tax: int
    credit: int  # minor units, positive: the export credit
    hours: tuple[HourShare, ...] = ()

    @property
    def charge_net(self) -> int:
        return self.charge - self.tax


def price_day(
    version: VersionLike,
    hours: Sequence[HourUsage],
    *,
    day: dt.date,
    standing: bool,
    month_to_date: int,
    currency: str,
    unit: str,
    shares: bool = False,
    zone: zoneinfo.ZoneInfo | None = None,
) -> DayCost:
    """Price one local day of one supply: `hours` are its hours (local starts, time order),
    `month_to_date` its imported consumption of the month before the day (for tiers).

    With `shares`, each hour also gets its share of the day (a day with a charge but no hours
    gets one share at its local midnight; `zone` is then required).
    """
    priced = price(
        [Segment(version, 1 if standing else 0, hours)],
        currency=currency,
        unit=unit,
        month_to_date=month_to_date,
    )
    imported = sum(h.quantity for h in hours)
    exported = sum(h.export for h in hours)
    charge, credit = priced.charge, priced.credit
    day_shares: tuple[HourShare, ...] = ()
    if shares:
        day_shares = _shares(
            version,
            hours,
            standing=standing,
            month_to_date=month_to_date,
            charge=charge,
            credit=credit,
        )
        if not hours and (charge or credit):
            if zone is None:
                raise ValueError("a day without hours needs its zone to place its share")
            midnight = local_midnight(day, zone).astimezone(zone)
            day_shares = (HourShare(midnight, 0, 0, charge, credit),)
    return DayCost(
        day=day,
        version=version,
        lines=tuple(priced.lines),
        imported=imported,
        exported=exported,
        estimated=sum(h.estimated for h in hours),
        standing=standing,
        charge=charge,
        tax=priced.tax,
        credit=credit,
        hours=day_shares,
    )


def _shares(
    version: VersionLike,
    hours: Sequence[HourUsage],
    *,
    standing: bool,
    month_to_date: int,
    charge: int,
    credit: int,
) -> tuple[HourShare, ...]:
    if not hours:
        return ()
    weights = exact_hour_costs(version, hours, month_to_date=month_to_date)
    if standing and version.standing_charge:
        # Spread over the hours the day has data for; their shares still add up to the day.
        per_hour = version.standing_charge / len(hours)
        weights = [w + per_hour for w in weights]
    charges = allocate(charge, weights)
    credits = allocate(credit, [Decimal(h.export) for h in hours])
    return tuple(
        HourShare(h.start, h.quantity, h.export, c, x)
        for h, c, x in zip(hours, charges, credits, strict=True)
    )


def allocate(total: int, weights: Sequence[Decimal]) -> list[int]:
    """Split whole minor units `total` in proportion to `weights` (evenly when they are all
    zero): floor of each exact share, then one more unit to the largest remainders, earliest
    first on ties. The parts always sum to `total`."""
    if not weights:
        return []
    if total < 0:
        return [-part for part in allocate(-total, weights)]
    positive = [max(w, Decimal(0)) for w in weights]
    whole = sum(positive, Decimal(0))
    if not whole:
        positive, whole = [Decimal(1)] * len(weights), Decimal(len(weights))
    exact = [total * w / whole for w in positive]
    parts = [int(e) for e in exact]  # floor: every e is >= 0
    left = total - sum(parts)
    order = sorted(range(len(exact)), key=lambda i: (parts[i] - exact[i], i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def days_priced(
    hours: Iterable[HourUsage],
    windows: Sequence[Window],
    *,
    first: dt.date,
    stop: dt.date,
    standing: Callable[[dt.date], bool],
    currency: str,
    unit: str,
    zone: zoneinfo.ZoneInfo,
    shares: bool = False,
    month_to_date: int = 0,
) -> list[DayCost]:
    """Price every local day in [first, stop) that a window covers.

    `hours` are the supply's hours in time order, local to `zone`; those before `first` (back
    to the 1st of its month) only count towards the tiers; `month_to_date` is what the month
    used before the first of them.
    """
    by_day: dict[dt.date, list[HourUsage]] = {}
    for hour in hours:
        by_day.setdefault(hour.start.date(), []).append(hour)
    result: list[DayCost] = []
    cumulative, month = month_to_date, (first.year, first.month)
    day = min([first, *by_day])
    windows = sorted(windows, key=lambda w: w.start)
    w = 0
    while day < stop:
        if (day.year, day.month) != month:
            cumulative, month = 0, (day.year, day.month)
        day_hours = by_day.get(day, [])
        if day >= first:
            while w < len(windows) and windows[w].end <= day:
                w += 1
            if w < len(windows) and windows[w].start <= day:
                result.append(
                    price_day(
                        windows[w].version,
                        day_hours,
                        day=day,
                        standing=standing(day),
                        month_to_date=cumulative,
                        currency=currency,
                        unit=unit,
                        shares=shares,
                        zone=zone,
                    )
                )
        cumulative += sum(h.quantity for h in day_hours)
        day += dt.timedelta(days=1)
    return result


def holds_at_midnight(
    supplies: Sequence[tuple[dt.datetime, dt.datetime | None]],
    day: dt.date,
    zone: zoneinfo.ZoneInfo,
) -> bool:
    """Whether one of the (start, end) supply periods holds the service point at the day's
    local midnight: the supply that pays that day's standing charge."""
    midnight = local_midnight(day, zone)
    return any(start <= midnight and (end is None or end > midnight) for start, end in supplies)


@dataclass
class SupplyCosts:
    """The priced days of one supply over a range, and what names their money."""

    currency: str
    tariff: str
    unit: str  # the tariff's quantity unit (kWh, m3)
    days: list[DayCost] = field(default_factory=list)
    bands: bool = False  # a time-of-use tariff is in force on some day

    @property
    def charge(self) -> int:
        return sum(d.charge for d in self.days)

    @property
    def credit(self) -> int:
        return sum(d.credit for d in self.days)


def supply_costs(
    *,
    account_id: int,
    service_point_id: int,
    first: dt.date,
    stop: dt.date,
    time_zone: str,
    as_of: dt.datetime,
    shares: bool = False,
) -> SupplyCosts | None:
    """The priced local days [first, stop) of the account's supply at a service point, up to
    `as_of` (a day in progress costs its hours so far, without its standing charge); None when
    no tariff is assigned there in the range. Days carry their hours' shares when `shares` is
    asked for or a time-of-use tariff is in force (its split by band needs them).
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    windows, currency, tariff, unit = supply_windows(
        account_id=account_id, service_point_id=service_point_id, first=first, stop=stop
    )
    if not windows:
        return None
    structures = [structure_of(w.version) for w in windows]
    tiered = any(plan.tiers for s in structures for plan in s.plans_by_month.values())
    bands = any(plan.bands for s in structures for plan in s.plans_by_month.values())
    shares = shares or bands  # a time-of-use split needs each day's hours
    start = local_midnight(month_start(first) if tiered else first, zone)
    end = min(local_midnight(stop, zone), as_of)
    hours: list[HourUsage] = []
    if start < end:
        hours = hourly_usage(
            account_ids=[account_id],
            service_point_ids=[service_point_id],
            start=start,
            end=end,
            time_zone=time_zone,
        ).get((account_id, service_point_id), [])
    periods = [
        (s.start, s.end)
        for s in supplies_of_account(account_id=account_id, service_point_id=service_point_id)
    ]

    def standing(day: dt.date) -> bool:
        over = local_midnight(day + dt.timedelta(days=1), zone) <= as_of
        return over and holds_at_midnight(periods, day, zone)

    last = min(stop, (as_of - dt.timedelta(microseconds=1)).astimezone(zone).date() + _DAY)
    days = days_priced(
        hours,
        windows,
        first=first,
        stop=max(first, last),
        standing=standing,
        currency=currency,
        unit=unit,
        zone=zone,
        shares=shares,
    )
    return SupplyCosts(currency=currency, tariff=tariff, unit=unit, days=days, bands=bands)


_DAY = dt.timedelta(days=1)


def supply_windows(
    *, account_id: int, service_point_id: int, first: dt.date, stop: dt.date
) -> tuple[list[Window], str, str, str]:
    """The tariff windows of a supply over the local days [first, stop) (billing.windows: the
    bill's rule), with the currency, name and quantity unit of the tariff in force last. Days
    the bill would refuse to price are left unpriced here."""
    found = tariff_windows(
        account_ids=[account_id], first=first, stop=stop, service_point_id=service_point_id
    ).by_supply.get((account_id, service_point_id), [])
    if not found:
        return [], "", "", ""
    last = found[-1]
    windows = [Window(w.version, w.start, w.end) for w in found]
    return windows, last.currency, last.tariff_name, last.unit


def account_costs(
    *, account_id: int, time_zone: str, first: dt.date, as_of: dt.datetime
) -> tuple[int, int, str] | None:
    """Charge and export credit of all the account's supplies from the local day `first` up
    to `as_of` (the home page's "this month so far", priced as the bill will be); None when no
    supply has a tariff, and only the first currency found is counted."""
    stop = (as_of - dt.timedelta(microseconds=1)).astimezone(zoneinfo.ZoneInfo(time_zone)).date()
    charge, credit, currency = 0, 0, ""
    for service_point in service_points_of_account(account_id=account_id):
        costs = supply_costs(
            account_id=account_id,
            service_point_id=service_point.pk,
            first=first,
            stop=stop + _DAY,
            time_zone=time_zone,
            as_of=as_of,
        )
        if costs is not None and currency in ("", costs.currency):
            charge, credit, currency = charge + costs.charge, credit + costs.credit, costs.currency
    return (charge, credit, currency) if currency else None
