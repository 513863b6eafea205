"""The ISO 4217 table against babel's (CLDR) currency data, so drift in either shows up."""

from __future__ import annotations

import datetime as dt

from babel.core import get_global
from babel.numbers import get_currency_precision, get_territory_currencies

from portal.lib.currency import MINOR_UNITS

# ISO 4217 minor units where CLDR shows fewer digits (CLDR's are display digits, not storage).
ISO_NOT_CLDR = {
    "AFN": 2, "ALL": 2, "IQD": 3, "IRR": 2, "KPW": 2, "LAK": 2, "LBP": 2,
    "MGA": 2, "MMK": 2, "RSD": 2, "SOS": 2, "SYP": 2, "YER": 2,
}  # fmt: skip


def test_minor_units_agree_with_babel_except_the_known_iso_cases() -> None:
    differs = {
        code: digits
        for code, digits in MINOR_UNITS.items()
        if digits != get_currency_precision(code)
    }
    assert differs == ISO_NOT_CLDR


def test_every_code_is_one_babel_knows_as_a_currency() -> None:
    # As of a fixed date so the test does not change meaning with the calendar.
    on = dt.date(2025, 1, 1)
    tender: set[str] = set()
    for territory in get_global("territory_currencies"):
        tender |= set(get_territory_currencies(territory, on, tender=True))
    # SVC: El Salvador's colón is still ISO-active though the dollar is what circulates.
    assert set(MINOR_UNITS) - tender <= {"SVC"}
    assert "USD" in MINOR_UNITS and "TWD" in MINOR_UNITS
