"""Money: an exact amount in one currency, for tests that check the rounding rule and that
currencies never mix (production code works in whole minor units and portal.lib.money)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from portal.lib.money import (
    MoneyError,
    from_minor,
    minor_exponent,
    parse_decimal,
    round_money,
    to_minor,
)


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
