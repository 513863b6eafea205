"""The one rule for units: which base unit a utility is stored in, and how people read it.

Readings and rollups are stored in base units (Wh for energy, litres for volume) and shown in
kWh and m³. Electricity and heat are always energy and water is always volume; gas meters report
either (Green Button therms as energy, DSMR m3 as volume), so a gas service point's unit comes
from its registers (meters.selectors.service_point_base_unit) and only defaults to litres.

Pure: no queries, so every page, CSV, PDF, chart and API can share it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from meters.models import Unit, UtilityKind


class DisplayUnit(NamedTuple):
    """How a base unit is shown: the unit's label and what to divide base units by."""

    unit: str
    divisor: int


_DISPLAY: dict[str, DisplayUnit] = {
    Unit.WH: DisplayUnit("kWh", 1000),
    Unit.L: DisplayUnit("m³", 1000),
    Unit.VARH: DisplayUnit("kvarh", 1000),
}

# Kinds whose base unit never depends on the meter.
FIXED_BASE_UNITS: dict[str, str] = {
    UtilityKind.ELECTRICITY: Unit.WH,
    UtilityKind.HEAT: Unit.WH,
    UtilityKind.WATER: Unit.L,
}
# A gas service point without registers to ask is taken to be metered by volume.
GAS_DEFAULT_BASE_UNIT = Unit.L


def kind_base_unit(kind: str) -> str:
    """The base unit a kind is stored in when no register says otherwise."""
    return FIXED_BASE_UNITS.get(kind, GAS_DEFAULT_BASE_UNIT)


def kind_base_unit_sql(kind: str) -> str:
    """kind_base_unit() as an SQL expression over the column `kind` (constants only)."""
    cases = " ".join(f"WHEN '{k}' THEN '{u}'" for k, u in sorted(FIXED_BASE_UNITS.items()))
    return f"(CASE {kind} {cases} ELSE '{GAS_DEFAULT_BASE_UNIT}' END)"


def display_unit(base_unit: str) -> DisplayUnit:
    """The unit people read a base unit (Wh, L) in, and its divisor: kWh/1000, m³/1000."""
    try:
        return _DISPLAY[base_unit]
    except KeyError:
        raise ValueError(f"unknown base unit {base_unit!r}") from None


def in_display_units(base_units: int, base_unit: str) -> Decimal:
    """Base units (Wh, L) as their display unit (kWh, m³), exactly."""
    return Decimal(base_units) / display_unit(base_unit).divisor
