"""The cost of a consumption chart's buckets, from billing.costs: the usage page (in web)
calls usage_costs directly, so meters never needs to know about tariffs.

Every bucket is made of whole priced days or of shares of them (billing.costs), so a day's
charge and credit are the same in the day view, the week view's hours, the month view, the
CSVs, the ledger and the bill.
"""

from __future__ import annotations

import bisect
import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from billing.costs import DayCost, HourShare, SupplyCosts, allocate, supply_costs
from billing.pricing import TariffError, band_at, structure_of
from meters.periods import ConsumptionPoint, Resolution

_HOUR_SECONDS = 3600


@dataclass(frozen=True)
class CostQuery:
    """The buckets of one chart: bucket i runs from `starts[i]` to `starts[i + 1]` (or `end`).

    Starts are aware datetimes in UTC for hours and shorter, local dates for days and months.
    `points` are the chart's own values (one per start) when they are shorter than an hour: an
    hour's share is split among its quarter hours by their consumption. `end` is also the
    moment the costs are taken at: days over by then carry their standing charge.
    """

    account_id: int
    service_point_id: int
    starts: Sequence[dt.datetime | dt.date]
    end: dt.datetime
    resolution: Resolution
    time_zone: str
    points: Sequence[ConsumptionPoint] = ()
    export_points: Sequence[ConsumptionPoint] = ()
    # The range's own start (UTC): a first bucket labelled before it (the first of the month
    # of a range that starts on the 10th) runs from it.
    start: dt.datetime | None = None


@dataclass(frozen=True)
class CostSeries:
    """Per bucket: the charge for imported energy (minor units, tax and standing charges of the
    days that are over included) and the credit for exported energy (minor units, positive),
    never netted; and, for time-of-use tariffs, the consumption per band and bucket in base
    units. A bucket's figures are the sum of its days' (or its share of its day), exactly as
    the ledger and the bills have them."""

    currency: str
    tariff: str
    charges: list[int]
    credits: list[int]
    bands: dict[str, list[int]] = field(default_factory=dict)

    @property
    def has_credit(self) -> bool:
        return any(self.credits)


def usage_costs(query: CostQuery) -> CostSeries | None:
    """Charge, credit and time-of-use split of each bucket; None without a tariff."""
    if not query.starts:
        return None
    zone = zoneinfo.ZoneInfo(query.time_zone)
    daily = query.resolution in (Resolution.DAY, Resolution.MONTH)
    first = _date(query.starts[0], zone)
    if query.start is not None:
        first = max(first, query.start.astimezone(zone).date())
    stop = (query.end - dt.timedelta(microseconds=1)).astimezone(zone).date() + dt.timedelta(1)
    try:
        costs = supply_costs(
            account_id=query.account_id,
            service_point_id=query.service_point_id,
            first=first,
            stop=stop,
            time_zone=query.time_zone,
            as_of=query.end,
            shares=not daily,
        )
    except TariffError:
        return None
    if costs is None:
        return None
    size = len(query.starts)
    series = CostSeries(costs.currency, costs.tariff, [0] * size, [0] * size, {})
    if daily:
        _add_days(series, costs, [_date(s, zone) for s in query.starts])
    else:
        _add_hours(series, costs, query)
    return series


def _add_days(series: CostSeries, costs: SupplyCosts, dates: Sequence[dt.date]) -> None:
    """Whole days into the day or month buckets that hold them."""
    for day in costs.days:
        index = bisect.bisect_right(dates, day.day) - 1
        if index >= 0:
            series.charges[index] += day.charge
            series.credits[index] += day.credit
            if costs.bands:
                _add_bands(series, index, day, [(h.start, h.quantity) for h in day.hours])


def _add_hours(series: CostSeries, costs: SupplyCosts, query: CostQuery) -> None:
    """Each day's hour shares into the hour buckets that hold them, or split among the quarter
    hours of the chart."""
    epochs = [s.timestamp() for s in query.starts if isinstance(s, dt.datetime)]
    quarters = query.resolution == Resolution.QUARTER_HOUR and len(query.points) == len(epochs)
    for day in costs.days:
        for hour in day.hours:
            if quarters:
                parts = _quarter_parts(hour, epochs, query.points, query.export_points)
            else:
                index = bisect.bisect_right(epochs, hour.start.timestamp()) - 1
                parts = [(index, hour.charge, hour.credit, hour.quantity)] if index >= 0 else []
            for index, charge, credit, quantity in parts:
                series.charges[index] += charge
                series.credits[index] += credit
                if costs.bands:
                    _add_bands(series, index, day, [(hour.start, quantity)])


def _date(start: dt.datetime | dt.date, zone: zoneinfo.ZoneInfo) -> dt.date:
    return start.astimezone(zone).date() if isinstance(start, dt.datetime) else start


def _quarter_parts(
    hour: HourShare,
    epochs: Sequence[float],  # not money: POSIX timestamps
    points: Sequence[ConsumptionPoint],
    export_points: Sequence[ConsumptionPoint],
) -> list[tuple[int, int, int, int]]:
    """An hour's share split among the chart's quarter hours inside it, the charge by their
    consumption and the credit by their export; the whole share goes to the bucket holding
    the hour's start when no quarter hour is inside it."""
    start = hour.start.timestamp()
    lo = bisect.bisect_left(epochs, start)
    hi = bisect.bisect_left(epochs, start + _HOUR_SECONDS)
    if lo >= hi:
        index = bisect.bisect_right(epochs, start) - 1
        return [(index, hour.charge, hour.credit, hour.quantity)] if index >= 0 else []
    inside = points[lo:hi]
    exported = {p.start: p.consumption for p in export_points}
    charges = allocate(hour.charge, [Decimal(p.consumption) for p in inside])
    credits = allocate(hour.credit, [Decimal(exported.get(p.start, 0)) for p in inside])
    return [(lo + i, charges[i], credits[i], p.consumption) for i, p in enumerate(inside)]


def _add_bands(
    series: CostSeries,
    index: int,
    day: DayCost,
    hours: Sequence[tuple[dt.datetime, int]],
) -> None:
    """Add (local start, quantity) pairs of a day to their time-of-use bands at `index`."""
    structure = structure_of(day.version)
    for start, quantity in hours:
        band = band_at(structure, start)
        if band is not None:
            values = series.bands.setdefault(band.name, [0] * len(series.charges))
            values[index] += quantity
