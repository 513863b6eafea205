"""Money: a Decimal amount with its ISO 4217 currency, and the one rounding rule.

The rule: an amount is rounded to the currency's minor unit **half up** (away from zero on a
tie: 0.005 EUR -> 0.01, -0.005 EUR -> -0.01) once per line: each bill or charge line is priced
exactly (quantity x unit rate, with up to 6 decimals of rate) and then rounded; tax is computed
on the sum of the rounded lines and rounded once; a total is the sum of rounded amounts, never
rounded again. Ledger amounts are whole minor units (`int`), so nothing after a posting is ever
rounded. Floats never appear: parse_decimal refuses a float.

Pages write money through babel (format_amount / format_money) in the active language's locale,
with the ISO 4217 minor unit from portal.lib.currency deciding the decimals shown.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal
from django.utils.translation import get_language, ngettext, to_locale
from django.utils.translation import gettext as _

from portal.lib.currency import MINOR_UNITS

RATE_PLACES = 6  # unit rates keep up to six decimals (docs/DESIGN.md §5)


class MoneyError(ValueError):
    """An amount or currency that money cannot hold."""


def minor_exponent(currency: str) -> int:
    """Return the digits after the decimal point of `currency`.

    :raises MoneyError: for a code that is not an active ISO 4217 currency.
    """
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency") from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round `amount` half up to the minor unit of `currency`."""
    quantum = Decimal(1).scaleb(-minor_exponent(currency))
    return amount.quantize(quantum, rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Round half up and return whole minor units (cents for EUR, yen for JPY)."""
    return int(round_money(amount, currency).scaleb(minor_exponent(currency)))


def from_minor(minor: int, currency: str) -> Decimal:
    """Return the Decimal amount of `minor` units of `currency`."""
    return Decimal(minor).scaleb(-minor_exponent(currency))


def format_minor(minor: int, currency: str) -> str:
    """`12345, "EUR"` -> `123.45 EUR`: exact, for audit data and logs (pages use
    format_money)."""
    return f"{from_minor(minor, currency)} {currency}"


def babel_locale(language: str | None = None) -> Locale:
    """The babel locale for a Django language code (the active language by default).

    Falls back to English for a language babel does not know, as Django falls back to
    LANGUAGE_CODE.
    """
    code = to_locale(language or get_language() or "en")
    try:
        return Locale.parse(code)
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def _pattern(currency: str) -> str:
    # An explicit pattern, not CLDR's currency digits: CLDR shows fewer decimals than ISO 4217
    # for some currencies (IQD, RSD...), and a page must show what the ledger holds.
    exponent = minor_exponent(currency)
    return "#,##0" + ("." + "0" * exponent if exponent else "")


def format_amount(amount: Decimal, currency: str, language: str | None = None) -> str:
    """`Decimal("1192.8"), "TWD"` -> `1,192.80`: an amount as every page writes it, in the
    active language's number symbols: rounded half up to the currency's minor unit, all its
    decimals shown, digits grouped."""
    return format_decimal(
        round_money(amount, currency), format=_pattern(currency), locale=babel_locale(language)
    )


def format_money(minor: int, currency: str, language: str | None = None) -> str:
    """`119280, "TWD"` -> `1,192.80 TWD`: money as every page writes it; the ISO code, not a
    symbol, so `$` never leaves a reader guessing which dollar."""
    return format_currency(
        round_money(from_minor(minor, currency), currency),
        currency,
        format=_pattern(currency) + " ¤¤",
        locale=babel_locale(language),
        currency_digits=False,
    )


def parse_decimal(value: object) -> Decimal:
    """Parse a rate or amount given as str, int or Decimal; refuse floats and junk.

    :raises MoneyError: for floats, non-finite numbers and anything unparsable.
    """
    if isinstance(value, float | bool):  # not money
        raise MoneyError("money is never a float: give it as a string or Decimal")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise MoneyError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise MoneyError(f"{value!r} is not a finite number")
    return number


# Digits with at most one decimal point, an optional sign: no thousands separators (1,000 could
# be a thousand or one), no exponents, no NaN or Infinity.
_AMOUNT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
# Amounts in minor units stay under 10^18: they fit a PostgreSQL bigint with room to add up.
MAX_MINOR_DIGITS = 18


class AmountError(MoneyError):
    """An amount a person typed that cannot be taken as it is; the message says why, in the
    active language."""


def parse_amount(text: str, currency: str, *, signed: bool = False) -> Decimal:
    """Parse an amount typed in major units of `currency` (a form field, an API body): refused,
    never rounded, when it has more decimals than the currency's minor unit (10.005 TWD is a
    typing mistake, not 10.01).

    Refused: anything but plain digits and one decimal point (thousands separators, exponents,
    NaN, Infinity), more decimals than the currency has, zero, a negative amount unless
    `signed` (a ledger adjustment), and amounts of MAX_MINOR_DIGITS digits or more in minor
    units.

    :raises AmountError: with a translated message saying what is wrong.
    :raises MoneyError: for a currency that is not ISO 4217 (a programming error).
    """
    places = minor_exponent(currency)
    cleaned = text.strip()
    if not _AMOUNT.fullmatch(cleaned):
        raise AmountError(_("Enter a number."))
    amount = Decimal(cleaned)
    if amount == 0 or (amount < 0 and not signed):
        raise AmountError(_("Enter an amount above zero."))
    decimals = -min(0, int(amount.as_tuple().exponent))
    if decimals > places:
        # Django's own words for a DecimalField, so forms read as they did before.
        raise AmountError(
            ngettext(
                "Ensure that there are no more than %(max)s decimal place.",
                "Ensure that there are no more than %(max)s decimal places.",
                places,
            )
            % {"max": places}
        )
    if abs(amount.scaleb(places)) >= Decimal(10) ** MAX_MINOR_DIGITS:
        raise AmountError(_("Enter a smaller amount."))
    return amount
