"""The simulated fleet: service points, meters, registers and installations, as plain data.

`fleet_random` builds a mixed fleet for a number of meters; the demo builds its own. The fleet is
written to `fleet.json` next to the files, and `meters.simulator.load.fleet_apply` creates it in
the database through the services before the files are imported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from meters.simulator.profiles import SLOT_SECONDS, Load

FORMATS = ("csv", "json", "chirpstack", "dsmr", "espi")
# A register that never moves for this long is not considered stuck (export without generation).
NEVER_STUCK_HOURS = 32_767
# Base units per display unit.
DISPLAY_FACTOR = {"kWh": 1000, "m3": 1000}


@dataclass(frozen=True)
class RegisterSpec:
    code: str
    direction: str = "import"
    series: str = "register"  # "register": cumulative values; "interval": consumption
    unit: str = "Wh"
    display_unit: str = "kWh"
    dials: int | None = None
    tariff_rate: int | None = None
    obis: str = ""
    stuck_hours: int = 24
    is_main: bool = False
    initial: int = 0  # the register's value at the start, in base units
    # What the register measures: "use" (consumption, net of own generation), "export"
    # (generation beyond own use); with a tariff rate, only the slots of that rate.
    source: str = "use"

    @property
    def cumulative(self) -> bool:
        return self.series == "register"

    @property
    def wrap(self) -> int | None:
        """The rollover point in base units (10^dials display units)."""
        if self.dials is None or not self.cumulative:
            return None
        return int(10**self.dials) * DISPLAY_FACTOR[self.display_unit]


@dataclass(frozen=True)
class MeterSpec:
    serial: str
    kind: str
    fmt: str
    load: Load
    max_rate: int
    registers: tuple[RegisterSpec, ...]
    service_point: str
    communication: str = "manual"
    dev_eui: str | None = None
    address: str = ""

    @property
    def unit_symbol(self) -> str:
        return self.registers[0].display_unit

    def register(self, code: str) -> RegisterSpec:
        return next(r for r in self.registers if r.code == code)


@dataclass(frozen=True)
class Unit:
    """Meters delivered together: one meter, or a DSMR meter and its M-Bus gas meter."""

    key: str
    fmt: str
    meters: tuple[MeterSpec, ...]
    residential: bool = True

    @property
    def cumulative(self) -> bool:
        return any(r.cumulative for m in self.meters for r in m.registers)

    def registers(self) -> list[tuple[MeterSpec, RegisterSpec]]:
        return [(m, r) for m in self.meters for r in m.registers]


@dataclass(frozen=True)
class Installation:
    meter: str
    service_point: str
    installed_at: dt.datetime
    removed_at: dt.datetime | None = None


@dataclass
class Fleet:
    units: list[Unit]
    time_zone: str
    climate: str = "temperate"
    installations: list[Installation] = field(default_factory=list)

    def meters(self) -> list[MeterSpec]:
        return [m for u in self.units for m in u.meters]

    def replace_register(self, serial: str, register: RegisterSpec) -> None:
        """Swap a register's spec (the anomaly plan sets dials and start values)."""
        for i, unit in enumerate(self.units):
            if any(m.serial == serial for m in unit.meters):
                meters = tuple(
                    replace(
                        m,
                        registers=tuple(
                            register if r.code == register.code else r for r in m.registers
                        ),
                    )
                    if m.serial == serial
                    else m
                    for m in unit.meters
                )
                self.units[i] = replace(unit, meters=meters)
                return
        raise KeyError(serial)

    def as_json(self) -> dict[str, Any]:
        """The fleet as `fleet.json` holds it: what the database needs to know."""
        points: dict[str, dict[str, Any]] = {}
        meters = []
        for meter in self.meters():
            points.setdefault(
                meter.service_point,
                {
                    "code": meter.service_point,
                    "kind": meter.kind,
                    "address": meter.address,
                    "time_zone": self.time_zone,
                },
            )
            meters.append(
                {
                    "serial": meter.serial,
                    "kind": meter.kind,
                    "format": meter.fmt,
                    "communication": meter.communication,
                    "dev_eui": meter.dev_eui,
                    "max_rate": meter.max_rate,
                    "registers": [
                        {
                            "code": r.code,
                            "direction": r.direction,
                            "tariff_rate": r.tariff_rate,
                            "unit": r.unit,
                            "series": r.series,
                            "dials": r.dials if r.cumulative else None,
                            "display_unit": r.display_unit,
                            "obis": r.obis,
                            "interval_seconds": SLOT_SECONDS,
                            "is_main": r.is_main,
                            "stuck_hours": r.stuck_hours,
                        }
                        for r in meter.registers
                    ],
                }
            )
        return {
            "time_zone": self.time_zone,
            "service_points": list(points.values()),
            "meters": meters,
            "installations": [
                {
                    "meter": i.meter,
                    "service_point": i.service_point,
                    "installed_at": i.installed_at.isoformat(),
                    "removed_at": i.removed_at.isoformat() if i.removed_at else None,
                }
                for i in self.installations
            ],
        }


# --- A random fleet -------------------------------------------------------------------------

# Which format each meter slot gets, in turn (filtered by the formats asked for).
PATTERN = ("csv", "json", "chirpstack", "csv", "dsmr", "json", "csv", "espi", "chirpstack", "csv")
MAX_RATE = {  # base units per hour
    "electricity/home": 15_000,
    "electricity/office": 250_000,
    "electricity/warehouse": 250_000,
    "electricity/food": 120_000,
    "water/home": 2_500,
    "water/business": 10_000,
    "gas/home": 6_000,
    "gas/food": 25_000,
    "heat/home": 20_000,
}
DIALS = {"electricity": 6, "water": 5, "gas": 5, "heat": 6}
COMMUNICATION = {
    "csv": "4g",
    "json": "nbiot",
    "chirpstack": "lorawan",
    "dsmr": "p1",
    "espi": "cat1",
}
STUCK_HOURS = {"electricity": 24, "heat": 24, "water": 72, "gas": 72}


def _load(kind: str, profile: str, rng: random.Random, *, solar: float = 0.0) -> Load:
    """A plausible load for a meter of this kind and use."""
    scale = 0.6 + 0.8 * rng.random()
    key = f"{kind}/{profile}"
    daily, heating, cooling = {
        "electricity/home": (9_000.0, 150.0, 1_800.0),
        "electricity/office": (600_000.0, 6_000.0, 40_000.0),
        "electricity/warehouse": (450_000.0, 2_000.0, 15_000.0),
        "electricity/food": (280_000.0, 1_000.0, 12_000.0),
        "water/home": (280.0, 0.0, 15.0),
        "water/business": (4_000.0, 0.0, 150.0),
        "gas/home": (450.0, 380.0, 0.0),
        "gas/food": (40_000.0, 400.0, 0.0),
        "heat/home": (7_000.0, 4_500.0, 0.0),
    }[key]
    cap = MAX_RATE[key] * SLOT_SECONDS // 3600 * 8 // 10
    return Load(
        profile=key,
        daily=daily * scale,
        per_heating_dd=heating * scale,
        per_cooling_dd=cooling * scale,
        solar_kwp=solar,
        cap=cap,
    )


def _start_value(rng: random.Random, kind: str) -> int:
    """A register that has been counting for years: well under its rollover point."""
    wrap = 10 ** DIALS[kind] * 1000
    return int(wrap * (0.001 + 0.05 * rng.random()))


def _registers(
    kind: str, fmt: str, rng: random.Random, *, interval: bool, solar: bool
) -> tuple[RegisterSpec, ...]:
    unit, display = ("Wh", "kWh") if kind in ("electricity", "heat") else ("L", "m3")
    stuck = STUCK_HOURS[kind]
    if fmt == "dsmr":
        # T1 runs nights and weekends, T2 weekdays: each stands still for days at a time.
        return tuple(
            RegisterSpec(
                code=f"{'1' if direction == 'import' else '2'}.8.{rate}",
                direction=direction,
                unit="Wh",
                display_unit="kWh",
                dials=6,
                tariff_rate=rate,
                obis=f"1-0:{'1' if direction == 'import' else '2'}.8.{rate}",
                stuck_hours=192 if direction == "import" else NEVER_STUCK_HOURS,
                is_main=direction == "import" and rate == 1,
                initial=_start_value(rng, "electricity") if direction == "import" or solar else 0,
                source="use" if direction == "import" else "export",
            )
            for direction in ("import", "export")
            for rate in (1, 2)
        )
    if fmt == "espi":
        codes = [("import-900", "import", "use")]
        if solar:
            codes.append(("export-900", "export", "export"))
        return tuple(
            RegisterSpec(
                code=code,
                direction=direction,
                series="interval",
                unit="Wh",
                display_unit="kWh",
                stuck_hours=stuck,
                is_main=direction == "import",
                source=source,
            )
            for code, direction, source in codes
        )
    series = "interval" if interval else "register"
    registers = [
        RegisterSpec(
            code="import",
            series=series,
            unit=unit,
            display_unit=display,
            dials=DIALS[kind],
            stuck_hours=stuck,
            is_main=True,
            initial=_start_value(rng, kind),
        )
    ]
    if solar:
        registers.append(
            RegisterSpec(
                code="export",
                direction="export",
                series=series,
                unit=unit,
                display_unit=display,
                dials=DIALS[kind],
                stuck_hours=NEVER_STUCK_HOURS,
                initial=_start_value(rng, kind) // 10,
                source="export",
            )
        )
    return tuple(registers)


def _dev_eui(prefix: str, index: int) -> str:
    return hashlib.sha256(f"{prefix}:deveui:{index}".encode()).hexdigest()[:16].upper()


# (kind, profile, interval series, solar) in turn, per format.
_KINDS: dict[str, tuple[tuple[str, str, bool, bool], ...]] = {
    "csv": (
        ("electricity", "home", False, False),
        ("water", "home", False, False),
        ("gas", "home", False, False),
        ("electricity", "home", False, True),
        ("heat", "home", False, False),
        ("electricity", "office", True, False),
        ("water", "home", True, False),
        ("electricity", "home", True, False),
    ),
    "json": (
        ("electricity", "home", False, False),
        ("water", "home", False, False),
        ("heat", "home", True, False),
        ("gas", "home", False, False),
        ("electricity", "warehouse", False, False),
        ("water", "business", True, False),
    ),
    "chirpstack": (
        ("water", "home", False, False),
        ("water", "home", False, False),
        ("gas", "home", False, False),
    ),
    "dsmr": (("electricity", "home", False, False), ("electricity", "home", False, True)),
    "espi": (("electricity", "home", True, False), ("electricity", "home", True, True)),
}


def fleet_random(
    *,
    meters: int,
    seed: int,
    formats: tuple[str, ...] = FORMATS,
    prefix: str | None = None,
    time_zone: str = "Europe/Amsterdam",
    climate: str = "temperate",
) -> Fleet:
    """A mixed fleet of `meters` meters over the given formats, the same for the same seed."""
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ValueError(f"unknown formats: {', '.join(sorted(unknown)) or 'none given'}")
    prefix = prefix or f"S{seed}"
    rng = random.Random(f"{seed}|fleet")  # noqa: S311 - a simulation
    pattern = [f for f in PATTERN if f in formats] or list(formats)
    turn: dict[str, int] = dict.fromkeys(FORMATS, 0)
    units: list[Unit] = []
    count = 0
    while count < meters:
        fmt = pattern[len(units) % len(pattern)]
        kind, profile, interval, solar = _KINDS[fmt][turn[fmt] % len(_KINDS[fmt])]
        turn[fmt] += 1
        index = count + 1
        unit_meters: list[MeterSpec] = []
        if fmt == "espi":
            serial = str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()
        else:
            serial = f"{prefix}-{fmt[0].upper()}{kind[0].upper()}-{index:05d}"
        solar_kwp = round(2.5 + 3.0 * rng.random(), 1) if solar else 0.0
        main = MeterSpec(
            serial=serial,
            kind=kind,
            fmt=fmt,
            load=_load(kind, profile, rng, solar=solar_kwp),
            max_rate=MAX_RATE[f"{kind}/{profile}"],
            registers=_registers(kind, fmt, rng, interval=interval, solar=solar),
            service_point=f"SP-{prefix}-{index:05d}",
            communication=COMMUNICATION[fmt],
            dev_eui=_dev_eui(prefix, index) if fmt == "chirpstack" else None,
            address=f"{index} Simulation Street",
        )
        unit_meters.append(main)
        count += 1
        if fmt == "dsmr" and turn[fmt] % 2 == 1 and count < meters:
            # Every other DSMR household has a gas meter on M-Bus channel 1.
            gas_index = count + 1
            unit_meters.append(
                MeterSpec(
                    serial=f"{prefix}-DG-{gas_index:05d}",
                    kind="gas",
                    fmt=fmt,
                    load=_load("gas", "home", rng),
                    max_rate=MAX_RATE["gas/home"],
                    registers=(
                        RegisterSpec(
                            code="24.2.1",
                            unit="L",
                            display_unit="m3",
                            dials=5,
                            obis="0-1:24.2.1",
                            stuck_hours=STUCK_HOURS["gas"],
                            is_main=True,
                            initial=_start_value(rng, "gas"),
                        ),
                    ),
                    service_point=f"SP-{prefix}-{gas_index:05d}",
                    communication="wmbus",
                    address=main.address,
                )
            )
            count += 1
        units.append(
            Unit(
                key=f"{prefix}-U{len(units) + 1:05d}",
                fmt=fmt,
                meters=tuple(unit_meters),
                residential=profile == "home",
            )
        )
    return Fleet(units=units, time_zone=time_zone, climate=climate)


def fleet_summary(fleet: Fleet) -> dict[str, int]:
    """How many meters per format and kind (for the command's output)."""
    summary: dict[str, int] = {}
    for meter in fleet.meters():
        key = f"{meter.fmt}/{meter.kind}"
        summary[key] = summary.get(key, 0) + 1
    return dict(sorted(summary.items()))
