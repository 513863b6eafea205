"""Cost of a consumption chart's buckets, estimated with the account's own tariff.

Registered with meters.costs by BillingConfig.ready, so the usage page (in meters) can show
cost and time-of-use bands without meters knowing about tariffs. The same pricing rules as the
bills apply (tiers counted from the start of the local month, tax and daily standing charges
included); each bucket is rounded on its own, so the buckets of a month may differ from its
bill by a few minor units. That is why the page calls them estimates.
"""

from __future__ import annotations

import bisect
import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from billing.models import TariffVersion
from billing.pricing import HourUsage, Plan, Segment, TariffError, price, structure_of
from billing.selectors import hourly_usage, tariffs_between
from meters.costs import CostQuery, CostSeries
from meters.selectors import Resolution


@dataclass(frozen=True)
class _Window:
    version: TariffVersion
    start: dt.date
    end: dt.date


def _midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _bounds(query: CostQuery, zone: zoneinfo.ZoneInfo) -> list[dt.datetime]:
    """Each bucket's start in UTC, then the end."""
    bounds = [
        start.astimezone(dt.UTC) if isinstance(start, dt.datetime) else _midnight(start, zone)
        for start in query.starts
    ]
    if query.start is not None:
        bounds[0] = max(bounds[0], query.start)
    return [*bounds, max(query.end, bounds[-1])]


def _windows(query: CostQuery, first: dt.date, stop: dt.date) -> tuple[list[_Window], str, str]:
    assignments, versions = tariffs_between(
        account_id=query.account_id,
        service_point_id=query.service_point_id,
        first=first,
        stop=stop,
    )
    if not assignments:
        return [], "", ""
    currency = assignments[-1].tariff.currency
    windows = []
    for assignment in assignments:
        if assignment.tariff.currency != currency:
            continue  # a chart shows one currency; the bills refuse such accounts anyway
        a, b = max(assignment.valid_from, first), min(assignment.valid_to or stop, stop)
        for version in versions:
            if version.tariff_id != assignment.tariff_id:
                continue
            start, end = max(a, version.valid_from), min(b, version.valid_to or b)
            if start < end:
                windows.append(_Window(version, start, end))
    windows.sort(key=lambda w: w.start)
    return windows, currency, assignments[-1].tariff.name


def _units(query: CostQuery, zone: zoneinfo.ZoneInfo, start: dt.datetime) -> list[HourUsage]:
    """What is priced: the chart's own quarter hours, or the hourly rollups."""
    if query.resolution == Resolution.QUARTER_HOUR:
        return [
            HourUsage(p.start.astimezone(zone), p.consumption, p.estimated)
            for p in query.points
            if isinstance(p.start, dt.datetime)
        ]
    usage = hourly_usage(
        account_ids=[query.account_id],
        service_point_ids=[query.service_point_id],
        start=start,
        end=query.end,
        time_zone=query.time_zone,
    )
    return usage.get((query.account_id, query.service_point_id), [])


def _month_to_date(query: CostQuery, zone: zoneinfo.ZoneInfo, start: dt.datetime) -> int:
    """Consumption of the local month before the first bucket (tiers count from the 1st)."""
    local = start.astimezone(zone)
    month_start = _midnight(local.date().replace(day=1), zone)
    if month_start >= start:
        return 0
    usage = hourly_usage(
        account_ids=[query.account_id],
        service_point_ids=[query.service_point_id],
        start=month_start,
        end=start,
        time_zone=query.time_zone,
    )
    return sum(hour.quantity for hour in usage.get((query.account_id, query.service_point_id), []))


def _window_of(windows: Sequence[_Window], day: dt.date) -> _Window | None:
    for window in windows:
        if window.start <= day < window.end:
            return window
    return None


def usage_costs(query: CostQuery) -> CostSeries | None:  # noqa: PLR0912 - one pass, kept whole
    """Estimated cost and time-of-use split of each bucket; None without a tariff."""
    if not query.starts:
        return None
    zone = zoneinfo.ZoneInfo(query.time_zone)
    bounds = _bounds(query, zone)
    first = bounds[0].astimezone(zone).date()
    stop = (query.end - dt.timedelta(microseconds=1)).astimezone(zone).date() + dt.timedelta(1)
    windows, currency, tariff = _windows(query, first, stop)
    if not windows:
        return None
    unit = "kWh"
    try:
        tiered = any(
            plan.tiers for w in windows for plan in structure_of(w.version).plans_by_month.values()
        )
    except TariffError:
        return None
    units = _units(query, zone, bounds[0])
    month_to_date = _month_to_date(query, zone, bounds[0]) if tiered else 0
    epochs = [bound.timestamp() for bound in bounds]
    per_bucket: list[list[HourUsage]] = [[] for _ in query.starts]
    for hour in units:
        index = bisect.bisect_right(epochs, hour.start.timestamp()) - 1
        if 0 <= index < len(per_bucket):
            per_bucket[index].append(hour)
    daily = query.resolution in (Resolution.DAY, Resolution.MONTH)
    amounts: list[int] = []
    bands: dict[str, list[int]] = {}
    plans: dict[tuple[Any, int], Plan] = {}
    month: tuple[int, int] | None = None
    for index, hours in enumerate(per_bucket):
        segments: list[Segment] = []
        # Buckets past `end` (the rest of this month, say) cost nothing yet, and a day is
        # charged its standing charge once it is over.
        day_from = min(bounds[index], query.end).astimezone(zone).date()
        day_to = min(bounds[index + 1], query.end).astimezone(zone).date()
        for window in windows:
            days = (min(window.end, day_to) - max(window.start, day_from)).days if daily else 0
            inside = [h for h in hours if window.start <= h.start.date() < window.end]
            if inside or days > 0:
                segments.append(Segment(window.version, max(days, 0), inside))
        if hours and (hours[0].start.year, hours[0].start.month) != month:
            month = (hours[0].start.year, hours[0].start.month)
            if index:  # the first bucket starts with the month's consumption so far
                month_to_date = 0
        priced = price(segments, currency=currency, unit=unit, month_to_date=month_to_date)
        amounts.append(priced.total)
        for hour in hours:
            if (hour.start.year, hour.start.month) != month:
                month, month_to_date = (hour.start.year, hour.start.month), 0
            month_to_date += hour.quantity
        _add_bands(hours, index=index, windows=windows, plans=plans, bands=bands, size=len(amounts))
    for values in bands.values():
        values.extend([0] * (len(per_bucket) - len(values)))
    if not daily:
        _add_standing(
            amounts, windows=windows, epochs=epochs, end=query.end, zone=zone, currency=currency
        )
    return CostSeries(currency=currency, tariff=tariff, amounts=amounts, bands=bands)


def _add_bands(
    hours: Sequence[HourUsage],
    *,
    index: int,
    windows: Sequence[_Window],
    plans: dict[tuple[Any, int], Plan],
    bands: dict[str, list[int]],
    size: int,
) -> None:
    """Add a bucket's hours to their time-of-use bands (plans cached per version and month)."""
    for hour in hours:
        found = _window_of(windows, hour.start.date())
        if found is None:
            continue
        key = (found.version.pk, hour.start.month)
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = structure_of(found.version).plans_by_month[hour.start.month]
        if plan.slots:
            values = bands.setdefault(plan.band_for(hour.start).name, [])
            values.extend([0] * (size - len(values)))
            values[index] += hour.quantity


def _add_standing(
    amounts: list[int],
    *,
    windows: Sequence[_Window],
    epochs: Sequence[float],  # not money: POSIX timestamps
    end: dt.datetime,
    zone: zoneinfo.ZoneInfo,
    currency: str,
) -> None:
    """Intervals shorter than a day carry no standing charge of their own: each day that is
    over gets its charge (with its tax) in the interval that holds its last moment."""
    first = dt.datetime.fromtimestamp(epochs[0], dt.UTC).astimezone(zone).date()
    charge: dict[Any, int] = {}
    day = first
    while (following := _midnight(day + dt.timedelta(days=1), zone)) <= end:
        window = _window_of(windows, day)
        if window is not None and window.version.standing_charge:
            pk = window.version.pk
            if pk not in charge:
                charge[pk] = price(
                    [Segment(window.version, 1, [])], currency=currency, unit="kWh"
                ).total
            last_moment = following.timestamp() - 1
            index = min(max(bisect.bisect_right(epochs, last_moment) - 1, 0), len(amounts) - 1)
            amounts[index] += charge[pk]
        day += dt.timedelta(days=1)
