"""Units the importers accept, and how they convert to base units (Wh, varh or litres).

Energy is stored in Wh, reactive energy in varh and volume in litres. Gas reported as energy
(Green Button therms) is an energy register: 1 therm (US) = 105,480,400 J = 29,300.111… Wh.
"""

from __future__ import annotations

from decimal import Decimal

# unit symbol (lower case) -> (base unit, factor to the base unit)
UNITS: dict[str, tuple[str, Decimal]] = {
    "wh": ("Wh", Decimal(1)),
    "kwh": ("Wh", Decimal(1000)),
    "mwh": ("Wh", Decimal(1_000_000)),
    "mj": ("Wh", Decimal(1_000_000) / Decimal(3600)),
    "gj": ("Wh", Decimal(1_000_000_000) / Decimal(3600)),
    "therm": ("Wh", Decimal(105_480_400) / Decimal(3600)),
    # Reactive energy has a base of its own: it can never be added to active energy.
    "varh": ("varh", Decimal(1)),
    "kvarh": ("varh", Decimal(1000)),
    "mvarh": ("varh", Decimal(1_000_000)),
    "l": ("L", Decimal(1)),
    "m3": ("L", Decimal(1000)),
    "m³": ("L", Decimal(1000)),
    "ft3": ("L", Decimal("28.316846592")),
    "gal": ("L", Decimal("3.785411784")),
}

# The largest magnitude accepted in source units: anything beyond is corrupt, not a reading.
MAX_SOURCE_MAGNITUDE = Decimal("1e13")


def normalise_unit(symbol: str) -> str:
    """Return the lookup key of a unit as written in a file ("kWh", " M3 " -> "kwh", "m3")."""
    return symbol.strip().lower().replace("^3", "3")


def unit_rows() -> list[tuple[str, str, Decimal]]:
    """Rows for the SQL units table: (symbol, base unit, factor)."""
    return [(symbol, base, factor) for symbol, (base, factor) in UNITS.items()]
