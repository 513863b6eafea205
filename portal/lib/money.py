"""Money: a Decimal amount with its ISO 4217 currency, and the one rounding rule.

The rule: an amount is rounded to the currency's minor unit **half up** (away from zero on a
tie: 0.005 EUR -> 0.01, -0.005 EUR -> -0.01) once per line: each bill or charge line is priced
exactly (quantity x unit rate, with up to 6 decimals of rate) and then rounded; tax is computed
on the sum of the rounded lines and rounded once; a total is the sum of rounded amounts, never
rounded again. Ledger amounts are whole minor units (`int`), so nothing after a posting is ever
rounded. Floats never appear: building Money from a float raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from portal.lib.currency import MINOR_UNITS

RATE_PLACES = 6  # unit rates keep up to six decimals (DESIGN.md §5)


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


def format_amount(amount: Decimal, currency: str) -> str:
    """`Decimal("1192.8"), "TWD"` -> `1,192.80`: an amount as every page writes it, in every
    language: rounded to the currency's minor unit, all its decimals shown, and the digits
    grouped by three with a comma, as portal/formats writes every other figure."""
    return f"{round_money(amount, currency):,.{minor_exponent(currency)}f}"


def format_money(minor: int, currency: str) -> str:
    """`119280, "TWD"` -> `1,192.80 TWD`: money as every page writes it (format_amount)."""
    return f"{format_amount(from_minor(minor, currency), currency)} {currency}"


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


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency; arithmetic refuses to mix currencies."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise MoneyError("Money.amount must be a Decimal")
        minor_exponent(self.currency)

    @classmethod
    def of(cls, amount: object, currency: str) -> Money:
        return cls(parse_decimal(amount), currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        return cls(from_minor(minor, currency), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def rounded(self) -> Money:
        return Money(round_money(self.amount, self.currency), self.currency)

    @property
    def minor(self) -> int:
        """Whole minor units, rounded half up."""
        return to_minor(self.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, float):  # not money
            raise MoneyError("money is never multiplied by a float")
        return Money(self.amount * factor, self.currency)

    def __str__(self) -> str:
        return f"{round_money(self.amount, self.currency)} {self.currency}"
