"""Consumption profiles: weather, daily shapes and the 15-minute amounts of one meter.

Everything here is a pure function of (seed, meter, time): the same call gives the same numbers
whatever was generated before, so a simulation can be generated window by window, or again from
the same start to a later end (the first part comes out identical).

Amounts are whole base units (Wh or litres) per 15-minute slot; slot k of a day covers
[start + 15k min, start + 15(k + 1) min) and its reading carries the end time.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

SLOT_SECONDS = 900
SLOTS_PER_DAY = 96
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Climate:
    """Where the fleet is: the sun (latitude, longitude) and a yearly temperature curve."""

    name: str
    latitude: float
    longitude: float
    mean_c: float
    amplitude_c: float
    warmest_doy: int = 200
    daily_sd_c: float = 2.5
    heating_base_c: float = 15.5
    cooling_base_c: float = 22.0


CLIMATES = {
    "temperate": Climate("temperate", 52.37, 4.90, 10.5, 7.5),
    "subtropical": Climate("subtropical", 25.03, 121.56, 23.0, 6.0),
}


# --- Daily shapes ---------------------------------------------------------------------------


def _bump(hour: float, centre: float, width: float) -> float:
    distance = abs(hour - centre)
    distance = min(distance, 24.0 - distance)
    return math.exp(-0.5 * (distance / width) ** 2)


def _open(hour: float, opens: float, closes: float) -> float:
    """A smooth plateau: ~1 between opening and closing time, ~0 outside."""
    return 1.0 / (1.0 + math.exp(-(hour - opens) * 3.0)) / (1.0 + math.exp((hour - closes) * 3.0))


ShapeFn = Callable[[float, bool], float]


@dataclass(frozen=True)
class Profile:
    """The shape of a kind of use: a base part, a heating part and a cooling part."""

    base: ShapeFn
    heating: ShapeFn
    cooling: ShapeFn
    residential: bool = True
    vacation_base: float = 0.15  # the base part's level on a vacation day
    vacation_heating: float = 0.3  # frost protection / setback


def _flat(hour: float, weekend: bool) -> float:
    return 1.0


def _elec_home(h: float, weekend: bool) -> float:
    if weekend:
        return (
            0.30
            + 0.7 * _bump(h, 9.5, 1.3)
            + 0.6 * _bump(h, 13.5, 2.0)
            + 1.4 * _bump(h, 19.0, 1.8)
            + 0.4 * _bump(h, 22.3, 1.0)
        )
    return (
        0.30
        + 0.8 * _bump(h, 7.0, 0.7)
        + 0.25 * _bump(h, 13.0, 2.0)
        + 1.4 * _bump(h, 19.3, 1.6)
        + 0.5 * _bump(h, 21.8, 0.9)
    )


def _elec_home_heating(h: float, weekend: bool) -> float:
    return 0.4 + _bump(h, 7.5, 1.5) + _bump(h, 19.0, 3.0)


def _elec_home_cooling(h: float, weekend: bool) -> float:
    return 0.25 + _bump(h, 16.5, 3.5) + 0.6 * _bump(h, 1.5, 2.5)


def _elec_office(h: float, weekend: bool) -> float:
    return 0.35 + (0.0 if weekend else 1.0 * _open(h, 8.0, 18.5))


def _elec_office_hvac(h: float, weekend: bool) -> float:
    return 0.1 + (0.2 if weekend else 1.0) * _open(h, 7.0, 18.0)


def _elec_warehouse(h: float, weekend: bool) -> float:
    return 0.55 + (0.2 * _open(h, 8.0, 14.0) if weekend else 0.7 * _open(h, 6.0, 22.0))


def _elec_food(h: float, weekend: bool) -> float:
    busy = 0.45 * _open(h, 9.5, 22.0) + 0.9 * _bump(h, 12.3, 1.0) + 1.0 * _bump(h, 18.8, 1.3)
    return 0.25 + busy * (1.25 if weekend else 1.0)


def _food_hvac(h: float, weekend: bool) -> float:
    return 0.2 + _open(h, 9.5, 22.0)


def _water_home(h: float, weekend: bool) -> float:
    if weekend:
        return (
            0.01
            + 1.3 * _bump(h, 9.0, 1.3)
            + 0.5 * _bump(h, 13.0, 2.0)
            + 0.9 * _bump(h, 19.0, 2.0)
            + 0.2 * _bump(h, 22.5, 0.8)
        )
    return (
        0.01
        + 1.6 * _bump(h, 7.0, 0.8)
        + 0.3 * _bump(h, 12.5, 1.5)
        + 0.9 * _bump(h, 19.5, 1.6)
        + 0.3 * _bump(h, 22.0, 0.8)
    )


def _water_summer(h: float, weekend: bool) -> float:
    return _bump(h, 20.5, 1.0)  # the garden, on warm evenings


def _water_business(h: float, weekend: bool) -> float:
    return 0.02 + 0.5 * _open(h, 9.0, 22.0) + _bump(h, 12.0, 1.2) + _bump(h, 19.0, 1.5)


def _gas_home(h: float, weekend: bool) -> float:
    cooking = (0.5 if weekend else 0.15) * _bump(h, 12.5, 0.6) + 0.9 * _bump(h, 18.2, 0.6)
    hot_water = 0.6 * _bump(h, 7.2 if not weekend else 9.0, 0.6) + 0.3 * _bump(h, 21.0, 1.0)
    return 0.02 + cooking + hot_water


def _gas_home_heating(h: float, weekend: bool) -> float:
    daytime = (0.6 if weekend else 0.35) * _open(h, 9.0, 16.5)
    return 0.2 + 1.2 * _bump(h, 6.8, 1.0) + daytime + 1.0 * _bump(h, 18.5, 2.5)


def _gas_food(h: float, weekend: bool) -> float:
    busy = 0.8 * _open(h, 10.0, 21.5) + 1.2 * _bump(h, 12.0, 1.0) + 1.2 * _bump(h, 18.5, 1.2)
    return 0.05 + busy * (1.2 if weekend else 1.0)


def _heat_home(h: float, weekend: bool) -> float:
    return 0.15 + 0.8 * _bump(h, 7.0, 0.8) + 0.5 * _bump(h, 19.5, 1.5)


def _heat_home_heating(h: float, weekend: bool) -> float:
    return 0.7 + 0.5 * _open(h, 6.0, 22.5) + 0.3 * _bump(h, 7.0, 1.5)


PROFILES: dict[str, Profile] = {
    "electricity/home": Profile(_elec_home, _elec_home_heating, _elec_home_cooling),
    "electricity/office": Profile(
        _elec_office, _elec_office_hvac, _elec_office_hvac, residential=False
    ),
    "electricity/warehouse": Profile(
        _elec_warehouse, _elec_office_hvac, _elec_warehouse, residential=False
    ),
    "electricity/food": Profile(_elec_food, _food_hvac, _food_hvac, residential=False),
    "water/home": Profile(_water_home, _flat, _water_summer, vacation_base=0.0),
    "water/business": Profile(_water_business, _flat, _water_summer, residential=False),
    "gas/home": Profile(_gas_home, _gas_home_heating, _flat, vacation_base=0.0),
    "gas/food": Profile(_gas_food, _gas_home_heating, _flat, residential=False),
    "heat/home": Profile(_heat_home, _heat_home_heating, _flat, vacation_base=0.2),
}


@cache
def _mean_weekday(shape: ShapeFn) -> float:
    """The mean of a shape over a weekday, so that a shape of mean 1 scales to a daily total."""
    return sum(shape((k + 0.5) / 4.0, False) for k in range(SLOTS_PER_DAY)) / SLOTS_PER_DAY


# --- Days -----------------------------------------------------------------------------------


@dataclass
class DayContext:
    """What every meter shares on one day: local clock, weather, sun, tariff periods."""

    start_epoch: int
    hours: list[float]
    weekend: list[bool]
    low_tariff: list[bool]
    sun: list[float]
    temperature: float
    cloud: float
    local_date: dt.date
    heating_dd: float
    cooling_dd: float
    _shapes: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def shape(self, profile: str, part: str) -> list[float]:
        """The profile's part ('base', 'heating', 'cooling') per slot, mean 1 on a weekday."""
        key = (profile, part)
        values = self._shapes.get(key)
        if values is None:
            fn: ShapeFn = getattr(PROFILES[profile], part)
            norm = _mean_weekday(fn)
            values = [fn(h, w) / norm for h, w in zip(self.hours, self.weekend, strict=True)]
            self._shapes[key] = values
        return values


def day_context(
    *, start_epoch: int, tz: zoneinfo.ZoneInfo, climate: Climate, seed: int
) -> DayContext:
    """The shared context of the 96 slots from `start_epoch` (a UTC instant on the grid)."""
    hours: list[float] = []
    weekend: list[bool] = []
    sun: list[float] = []
    lat = math.radians(climate.latitude)
    for k in range(SLOTS_PER_DAY):
        mid = start_epoch + k * SLOT_SECONDS + SLOT_SECONDS // 2
        local = dt.datetime.fromtimestamp(mid, tz)
        hours.append(local.hour + local.minute / 60.0)
        weekend.append(local.weekday() >= 5)
        utc = dt.datetime.fromtimestamp(mid, dt.UTC)
        doy = utc.timetuple().tm_yday
        declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
        solar_hour = (utc.hour + utc.minute / 60.0 + climate.longitude / 15.0) % 24.0
        angle = math.radians(15.0 * (solar_hour - 12.0))
        elevation = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(
            declination
        ) * math.cos(angle)
        sun.append(max(0.0, elevation) ** 1.3)
    noon = dt.datetime.fromtimestamp(start_epoch + DAY_SECONDS // 2, tz)
    local_date = noon.date()
    weather = random.Random(f"{seed}|weather|{local_date.isoformat()}")  # noqa: S311 - a simulation
    doy = local_date.timetuple().tm_yday
    temperature = (
        climate.mean_c
        + climate.amplitude_c * math.cos(2 * math.pi * (doy - climate.warmest_doy) / 365.25)
        + weather.gauss(0.0, climate.daily_sd_c)
    )
    cloud = 0.25 + 0.75 * weather.random()
    return DayContext(
        start_epoch=start_epoch,
        hours=hours,
        weekend=weekend,
        # The Dutch low tariff (T1): nights 23-07 and weekends.
        low_tariff=[w or h < 7.0 or h >= 23.0 for h, w in zip(hours, weekend, strict=True)],
        sun=sun,
        temperature=temperature,
        cloud=cloud,
        local_date=local_date,
        heating_dd=max(0.0, climate.heating_base_c - temperature),
        cooling_dd=max(0.0, temperature - climate.cooling_base_c),
    )


# --- One meter's day ------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """How much a meter uses: base units per neutral weekday and per degree-day."""

    profile: str
    daily: float
    per_heating_dd: float = 0.0
    per_cooling_dd: float = 0.0
    solar_kwp: float = 0.0
    cap: int = 0  # the most one slot may hold (kept under the meter's physical maximum)


def _keep_alive(kind: str) -> tuple[float, int] | None:
    """A small use every day (a cistern refill, a boiler keeping warm): registers never stand
    still for days, so a stuck register is always an injected one."""
    return {"water": (7.5, 6), "gas": (5.0, 3)}.get(kind)


def day_amounts(
    *, kind: str, load: Load, ctx: DayContext, rng: random.Random, vacation: bool
) -> tuple[list[int], list[int]]:
    """Return (consumption, generation) per slot for one meter and day, in base units."""
    profile = PROFILES[load.profile]
    base = ctx.shape(load.profile, "base")
    heating = ctx.shape(load.profile, "heating")
    cooling = ctx.shape(load.profile, "cooling")
    day_factor = max(0.5, 1.0 + rng.gauss(0.0, 0.12))
    base_level = load.daily / SLOTS_PER_DAY * day_factor
    heat_level = load.per_heating_dd * ctx.heating_dd / SLOTS_PER_DAY
    cool_level = load.per_cooling_dd * ctx.cooling_dd / SLOTS_PER_DAY
    if vacation:
        heat_level *= profile.vacation_heating
        cool_level = 0.0
    use: list[int] = []
    for k in range(SLOTS_PER_DAY):
        if vacation:
            expected = base_level * profile.vacation_base + heat_level * heating[k]
        else:
            expected = base_level * base[k] + heat_level * heating[k] + cool_level * cooling[k]
        use.append(_noisy(kind, expected, rng))
    alive = _keep_alive(kind)
    if alive is not None:
        hour, amount = alive
        slot = min(range(SLOTS_PER_DAY), key=lambda k: abs(ctx.hours[k] - hour))
        use[slot] += amount
    generation = [0] * SLOTS_PER_DAY
    if load.solar_kwp:
        peak = load.solar_kwp * 1000.0 * SLOT_SECONDS / 3600.0
        generation = [
            round(peak * s * ctx.cloud * (0.85 + 0.3 * rng.random())) if s > 0 else 0
            for s in ctx.sun
        ]
    if load.cap:
        use = [min(u, load.cap) for u in use]
    return use, generation


def _noisy(kind: str, expected: float, rng: random.Random) -> int:
    if expected <= 0.0:
        return 0
    if kind in ("water", "gas"):
        # Water and gas are drawn in events (a shower, a burner): often nothing at all.
        event = 12.0 if kind == "water" else 25.0
        chance = min(1.0, expected / event)
        if rng.random() >= chance:
            return 0
        return round(expected / chance * (0.5 + rng.random()))
    spread = 0.6 if kind == "electricity" else 0.3
    return round(expected * (1.0 - spread / 2 + spread * rng.random()))


def vacations(*, seed: int, site: str, days: int) -> set[int]:
    """The day indexes a household is away (7-14 days every few months); prefix-stable."""
    rng = random.Random(f"{seed}|vacation|{site}")  # noqa: S311 - a simulation
    away: set[int] = set()
    day = rng.randint(5, 120)
    while day < days:
        length = rng.randint(4, 14)
        away.update(range(day, min(days, day + length)))
        day += length + rng.randint(40, 160)
    return away
