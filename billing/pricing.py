"""Tariff maths: turn hourly consumption into priced, rounded lines. Pure: no database.

Structures (`TariffVersion.structure`, JSON; rates are strings of decimals, never floats):

    {"type": "flat", "rate": "0.2512"}
    {"type": "tiered", "tiers": [{"up_to": "120", "rate": "0.10"},
                                 {"up_to": "330", "rate": "0.15"},
                                 {"up_to": null,  "rate": "0.20"}]}
    {"type": "tou", "bands": [{"name": "peak", "days": "weekdays", "from": 7, "to": 23,
                               "rate": "0.30"}, ...]}
    {"type": "seasonal", "seasons": [{"name": "summer", "months": [6, 7, 8, 9],
                                      "structure": {<flat | tiered | tou>}}, ...]}

Rules, each decided once here:
- Quantities are priced per kWh (energy registers, base Wh) or per m³ (volume, base litres):
  1 unit = 1000 base units either way.
- Tiers are blocks of the **calendar month** (the billing period), counted in time order from
  the month's first local day; `up_to` is cumulative. Each unit is priced by the version in
  force on its local day and the tier its cumulative position falls into, so a mid-month
  tariff change neither resets nor doubles the blocks, and daily prepaid charges add up to
  what a monthly bill would price.
- Time-of-use bands are whole local hours (`from` inclusive, `to` exclusive, 0-24, wrapping
  past midnight when `from` > `to`) for `weekdays`, `weekends` or `all`; for each day type
  every hour is covered exactly once (hourly rollups are the finest validated data).
- Seasons are chosen by the local month and must cover the twelve months exactly once.
- Rounding (portal.lib.money): each line is quantity x rate rounded half up to the minor unit;
  tax per tax rate is the rounded product of the sum of the rounded charge lines; the total is
  the sum of rounded amounts. Which span is priced at once (a day, in billing.costs) is the
  caller's choice; every figure a person sees prices one local day at a time.
- Import and export never net: the *charge* is the consumption and standing lines with their
  tax; the *credit* is the export at the version's export rate, credited in full and untaxed
  (the utility buys the energy; the rate is what the customer receives per kWh).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from portal.lib.money import MoneyError, parse_decimal, to_minor
from portal.lib.periods import days_in_month, local_month_bounds, zone_of

BASE_PER_UNIT = 1000
WEEKDAYS, WEEKENDS, ALL_DAYS = "weekdays", "weekends", "all"
WEEKEND_START = 5  # date.weekday() of Saturday


class TariffError(ValueError):
    """A tariff structure that cannot be priced; the message says what is wrong."""


# --- Parsed structures ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    up_to: int | None  # cumulative base units, None for the last, unbounded block
    rate: Decimal
    label: str


@dataclass(frozen=True)
class Band:
    name: str
    days: str
    start: int
    end: int
    rate: Decimal

    def covers(self, weekday: int, hour: int) -> bool:
        weekend = weekday >= WEEKEND_START
        if (self.days == WEEKDAYS and weekend) or (self.days == WEEKENDS and not weekend):
            return False
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


@dataclass(frozen=True)
class Plan:
    """One season's prices: exactly one of rate, tiers or bands."""

    rate: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    bands: tuple[Band, ...] = ()
    season: str = ""
    # The band of each hour of a weekday (0-23) and of a weekend day (24-47).
    slots: tuple[Band, ...] = ()

    def band_for(self, local: dt.datetime) -> Band:
        """The band of the local hour starting at `local` (billing.windows: its weekday and
        wall-clock hour)."""
        return self.slots[(24 if local.weekday() >= WEEKEND_START else 0) + local.hour]


@dataclass(frozen=True)
class Structure:
    plans_by_month: dict[int, Plan]


def _rate(value: object, where: str) -> Decimal:
    try:
        rate = parse_decimal(value)
    except MoneyError as exc:
        raise TariffError(f"{where}: {exc}") from None
    if rate < 0:
        raise TariffError(f"{where}: a rate cannot be negative")
    if rate != rate.quantize(Decimal("0.000001")):
        raise TariffError(f"{where}: a rate has at most 6 decimals")
    return rate


def _plan(raw: Any, season: str, where: str) -> Plan:  # noqa: PLR0912, PLR0915
    if not isinstance(raw, dict):
        raise TariffError(f"{where}: expected an object")
    kind = raw.get("type")
    if kind == "flat":
        return Plan(rate=_rate(raw.get("rate"), f"{where}.rate"), season=season)
    if kind == "tiered":
        tiers_raw = raw.get("tiers")
        if not isinstance(tiers_raw, list) or not tiers_raw:
            raise TariffError(f"{where}: tiers must be a non-empty list")
        tiers: list[Tier] = []
        previous = Decimal(0)
        for i, tier in enumerate(tiers_raw):
            if not isinstance(tier, dict):
                raise TariffError(f"{where}.tiers[{i}]: expected an object")
            up_to_raw = tier.get("up_to")
            last = i == len(tiers_raw) - 1
            if up_to_raw is None:
                if not last:
                    raise TariffError(f"{where}.tiers[{i}]: only the last tier is unbounded")
                up_to = None
            else:
                if last:
                    raise TariffError(f"{where}: the last tier must be unbounded (up_to null)")
                bound = _rate(up_to_raw, f"{where}.tiers[{i}].up_to")
                if bound <= previous:
                    raise TariffError(f"{where}.tiers[{i}]: up_to must increase")
                previous = bound
                up_to = int(bound * BASE_PER_UNIT)
            lower = _fmt(tiers[-1].up_to) if tiers else "0"
            label = f"{lower}-{_fmt(up_to)}" if up_to is not None else f"{lower}+"
            tiers.append(Tier(up_to, _rate(tier.get("rate"), f"{where}.tiers[{i}].rate"), label))
        return Plan(tiers=tuple(tiers), season=season)
    if kind == "tou":
        bands_raw = raw.get("bands")
        if not isinstance(bands_raw, list) or not bands_raw:
            raise TariffError(f"{where}: bands must be a non-empty list")
        bands = []
        for i, band in enumerate(bands_raw):
            if not isinstance(band, dict):
                raise TariffError(f"{where}.bands[{i}]: expected an object")
            days = band.get("days", ALL_DAYS)
            start, end = band.get("from"), band.get("to")
            name = band.get("name")
            if days not in (WEEKDAYS, WEEKENDS, ALL_DAYS):
                raise TariffError(f"{where}.bands[{i}]: days is weekdays, weekends or all")
            if not isinstance(name, str) or not name.strip():
                raise TariffError(f"{where}.bands[{i}]: a band needs a name")
            if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool):
                raise TariffError(f"{where}.bands[{i}]: from and to are whole hours 0-24")
            if not (0 <= start <= 23 and 0 <= end <= 24) or (start == end % 24 and start != 0):
                raise TariffError(f"{where}.bands[{i}]: from and to are whole hours 0-24")
            rate = _rate(band.get("rate"), f"{where}.bands[{i}].rate")
            bands.append(Band(name.strip(), days, start, end % 24 if end != 24 else 24, rate))
        for weekday in (0, 5):
            for hour in range(24):
                n = sum(1 for b in bands if _covers_full(b, weekday, hour))
                day = "weekdays" if weekday < 5 else "weekends"
                if n != 1:
                    problem = "no band" if n == 0 else f"{n} bands"
                    raise TariffError(f"{where}: {problem} at {hour:02d}:00 on {day}")
        slots = tuple(
            next(b for b in bands if _covers_full(b, weekday, hour))
            for weekday in (0, WEEKEND_START)
            for hour in range(24)
        )
        return Plan(bands=tuple(bands), season=season, slots=slots)
    raise TariffError(f"{where}: type must be flat, tiered, tou or seasonal")


def _covers_full(band: Band, weekday: int, hour: int) -> bool:
    if band.start == 0 and band.end in (0, 24):
        weekend = weekday >= 5
        return not ((band.days == WEEKDAYS and weekend) or (band.days == WEEKENDS and not weekend))
    return band.covers(weekday, hour)


def _fmt(base: int | None) -> str:
    if base is None:
        return "+"
    units = Decimal(base) / BASE_PER_UNIT
    return f"{units.normalize():f}"


def parse_structure(raw: Any) -> Structure:
    """Validate a structure and return it ready to price.

    :raises TariffError: naming the first problem found.
    """
    if isinstance(raw, dict) and raw.get("type") == "seasonal":
        seasons = raw.get("seasons")
        if not isinstance(seasons, list) or not seasons:
            raise TariffError("seasons must be a non-empty list")
        by_month: dict[int, Plan] = {}
        for i, season in enumerate(seasons):
            if not isinstance(season, dict):
                raise TariffError(f"seasons[{i}]: expected an object")
            name = season.get("name")
            months = season.get("months")
            if not isinstance(name, str) or not name.strip():
                raise TariffError(f"seasons[{i}]: a season needs a name")
            if not isinstance(months, list) or not all(
                isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 12 for m in months
            ):
                raise TariffError(f"seasons[{i}]: months are numbers 1-12")
            plan = _plan(season.get("structure"), name.strip(), f"seasons[{i}].structure")
            for month in months:
                if month in by_month:
                    raise TariffError(f"month {month} is in more than one season")
                by_month[month] = plan
        missing = sorted(set(range(1, 13)) - set(by_month))
        if missing:
            raise TariffError(f"no season covers month(s) {', '.join(map(str, missing))}")
        return Structure(by_month)
    plan = _plan(raw, "", "structure")
    return Structure(dict.fromkeys(range(1, 13), plan))


# --- Pricing ----------------------------------------------------------------------------------


class VersionLike(Protocol):
    """What pricing needs of a TariffVersion (the model, or a plain record in tests)."""

    @property
    def pk(self) -> Any: ...
    @property
    def standing_charge(self) -> Decimal: ...
    @property
    def tax_rate(self) -> Decimal: ...
    @property
    def export_rate(self) -> Decimal | None: ...
    @property
    def structure(self) -> Any: ...


@dataclass(frozen=True)
class HourUsage:
    """One local hour's consumption at a service point, in base units."""

    start: dt.datetime  # aware, in the account's time zone
    quantity: int
    estimated: int = 0
    export: int = 0


@dataclass(frozen=True)
class Line:
    kind: str  # consumption | standing | export | tax
    label: str
    band: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: int  # minor units
    estimated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "band": self.band,
            "quantity": str(self.quantity),
            "unit": self.unit,
            "unit_price": str(self.unit_price),
            "amount": self.amount,
            "estimated": self.estimated,
        }


@dataclass
class Priced:
    lines: list[Line] = field(default_factory=list)

    @property
    def net(self) -> int:
        return sum(line.amount for line in self.lines if line.kind != "tax")

    @property
    def tax(self) -> int:
        return sum(line.amount for line in self.lines if line.kind == "tax")

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def credit(self) -> int:
        """The export credit, as a positive amount (its lines are negative)."""
        return -sum(line.amount for line in self.lines if line.kind == "export")

    @property
    def charge(self) -> int:
        """Consumption and standing charges with their tax: the total without the credit."""
        return self.total + self.credit

    @property
    def charge_net(self) -> int:
        return self.charge - self.tax


@dataclass(frozen=True)
class Segment:
    """The hours of consecutive local days priced by one tariff version."""

    version: VersionLike
    days: int
    hours: Sequence[HourUsage]


_structures: dict[tuple[Any, str], Structure] = {}


# The same version object asked again (a bill or a chart prices it day after day): found by
# identity before its structure is printed for the key. Entries hold the objects, so an id is
# never reused while cached; a structure is replaced, never changed in place, by the forms and
# services that edit it.
_by_object: dict[int, tuple[VersionLike, Any, Structure]] = {}


def structure_of(version: VersionLike) -> Structure:
    """The version's parsed structure, parsed once per (version, structure) and then cached."""
    seen = _by_object.get(id(version))
    if seen is not None and seen[0] is version and seen[1] is version.structure:
        return seen[2]
    key = (version.pk, repr(version.structure))
    parsed = _structures.get(key)
    if parsed is None:
        if len(_structures) > 4096:
            _structures.clear()
        parsed = _structures[key] = parse_structure(version.structure)
    if len(_by_object) > 4096:
        _by_object.clear()
    _by_object[id(version)] = (version, version.structure, parsed)
    return parsed


@dataclass
class _Totals:
    """What the hours add up to, before rounding: per (version, season, band/tier, rate)."""

    buckets: dict[tuple[Any, str, str, Decimal], list[int]] = field(default_factory=dict)
    order: list[tuple[Any, str, str, Decimal]] = field(default_factory=list)
    standing: list[tuple[VersionLike, int]] = field(default_factory=list)
    exports: dict[Any, list[Any]] = field(default_factory=dict)
    versions: dict[Any, VersionLike] = field(default_factory=dict)


def _accumulate(segments: Iterable[Segment], month_to_date: int) -> _Totals:  # noqa: PLR0912
    totals = _Totals()
    buckets, order, standing = totals.buckets, totals.order, totals.standing
    exports, versions = totals.exports, totals.versions
    cumulative = month_to_date
    month: tuple[int, int] | None = None
    for segment in segments:
        version = segment.version
        version_pk = version.pk
        versions[version_pk] = version
        structure = structure_of(version)
        if segment.days and version.standing_charge:
            standing.append((version, segment.days))
        plan_for: tuple[int, int] | None = None
        plan = structure.plans_by_month[1]
        for usage in segment.hours:
            local = usage.start
            ym = (local.year, local.month)
            if ym != month:
                if month is not None:
                    cumulative = 0
                month = ym
            if ym != plan_for:
                plan, plan_for = structure.plans_by_month[local.month], ym
            if usage.export:
                exports.setdefault(version_pk, [version, 0])[1] += usage.export
            quantity_in = usage.quantity
            if not quantity_in:
                continue
            if plan.tiers:
                parts = _split(plan, local, cumulative, quantity_in)
            elif plan.rate is not None:
                parts = [("", plan.rate, quantity_in)]
            else:
                band = plan.band_for(local)
                parts = [(band.name, band.rate, quantity_in)]
            for label, rate, quantity in parts:
                key = (version_pk, plan.season, label, rate)
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = [0, 0]
                    order.append(key)
                bucket[0] += quantity
                if usage.estimated:
                    # Estimated share, in proportion (floor): shown, not priced apart.
                    bucket[1] += usage.estimated * quantity // quantity_in
            cumulative += quantity_in
    return totals


def price(
    segments: Iterable[Segment],
    *,
    currency: str,
    unit: str,
    month_to_date: int = 0,
) -> Priced:
    """Price consecutive segments of one service point (hours in time order).

    `month_to_date` is the consumption of the calendar month before the first hour, in base
    units (for tiers); the tier count restarts at each new local month.
    """
    totals = _accumulate(segments, month_to_date)
    buckets, order, standing = totals.buckets, totals.order, totals.standing
    exports, versions = totals.exports, totals.versions
    result = Priced()
    for key in order:
        version_pk, season, label, rate = key
        quantity, estimated = buckets[key]
        units = Decimal(quantity) / BASE_PER_UNIT
        name = " · ".join(part for part in (season, label) if part)
        result.lines.append(
            Line(
                "consumption",
                name or "consumption",
                label,
                units,
                unit,
                rate,
                to_minor(units * rate, currency),
                estimated > 0,
            )
        )
    for version, days in standing:
        result.lines.append(
            Line(
                "standing",
                "standing charge",
                "",
                Decimal(days),
                "day",
                version.standing_charge,
                to_minor(version.standing_charge * days, currency),
            )
        )
    for version, exported in exports.values():
        if version.export_rate:
            units = Decimal(exported) / BASE_PER_UNIT
            result.lines.append(
                Line(
                    "export",
                    "export credit",
                    "",
                    units,
                    unit,
                    version.export_rate,
                    -to_minor(units * version.export_rate, currency),
                )
            )
    # Tax per tax rate, on the rounded charge lines of the versions with that rate (the export
    # credit is untaxed: see the module's rules).
    by_rate: dict[Decimal, int] = {}
    line_versions = [k[0] for k in order] + [v.pk for v, _ in standing]
    charge_lines = result.lines[: len(line_versions)]  # export lines come after them
    for line, version_pk in zip(charge_lines, line_versions, strict=True):
        rate = versions[version_pk].tax_rate
        by_rate[rate] = by_rate.get(rate, 0) + line.amount
    for rate, base in by_rate.items():
        if rate:
            result.lines.append(
                Line("tax", "tax", "", Decimal(base), currency, rate, _tax(base, rate))
            )
    return result


def _tax(base_minor: int, rate: Decimal) -> int:
    """Tax on an amount already in minor units, rounded half up to a whole minor unit."""
    return int((Decimal(base_minor) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def band_at(structure: Structure, local: dt.datetime) -> Band | None:
    """The time-of-use band of the local hour starting at `local`: its month's plan (the
    season), then its weekday and wall-clock hour; None for a plan without bands."""
    plan = structure.plans_by_month[local.month]
    return plan.band_for(local) if plan.slots else None


def _split(
    plan: Plan, local: dt.datetime, cumulative: int, quantity: int
) -> list[tuple[str, Decimal, int]]:
    if plan.rate is not None:
        return [("", plan.rate, quantity)]
    if plan.bands:
        band = plan.band_for(local)
        return [(band.name, band.rate, quantity)]
    if quantity < 0:
        # A negative hour (a correction) comes off the tier the month has reached.
        tier = next(t for t in plan.tiers if t.up_to is None or cumulative < t.up_to)
        return [(tier.label, tier.rate, quantity)]
    parts: list[tuple[str, Decimal, int]] = []
    position, left = cumulative, quantity
    for tier in plan.tiers:
        if tier.up_to is not None and position >= tier.up_to:
            continue
        room = left if tier.up_to is None else min(left, tier.up_to - position)
        parts.append((tier.label, tier.rate, room))
        position += room
        left -= room
        if left <= 0:
            break
    return parts


def preview_month(
    version: VersionLike,
    *,
    month: dt.date,
    quantity: Decimal,
    time_zone: str,
    currency: str,
    unit: str,
) -> Priced:
    """Price `quantity` units used evenly over every local hour of `month` (staff preview)."""
    zone = zone_of(time_zone)
    moment, following = local_month_bounds(month, zone)
    starts: list[dt.datetime] = []
    while moment < following:
        starts.append(moment.astimezone(zone))
        moment += dt.timedelta(hours=1)
    total = int(quantity * BASE_PER_UNIT)
    share, extra = divmod(total, len(starts))
    hours = [HourUsage(start, share + (1 if i < extra else 0)) for i, start in enumerate(starts)]
    days = days_in_month(month)
    return price([Segment(version, days, hours)], currency=currency, unit=unit)


def exact_hour_costs(
    version: VersionLike, hours: Sequence[HourUsage], *, month_to_date: int
) -> list[Decimal]:
    """Each hour's consumption priced exactly (unrounded, before tax and standing charge), by
    the same tier and band rules as price(): the weights by which billing.costs shares a
    day's rounded charge among its hours."""
    structure = structure_of(version)
    cumulative = month_to_date
    month: tuple[int, int] | None = None
    costs: list[Decimal] = []
    for usage in hours:
        local = usage.start
        if (local.year, local.month) != month:
            if month is not None:
                cumulative = 0
            month = (local.year, local.month)
        if not usage.quantity:
            costs.append(Decimal(0))
            continue
        plan = structure.plans_by_month[local.month]
        parts = _split(plan, local, cumulative, usage.quantity)
        costs.append(sum((rate * quantity for _label, rate, quantity in parts), Decimal(0)))
        cumulative += usage.quantity
    return [cost / BASE_PER_UNIT for cost in costs]
