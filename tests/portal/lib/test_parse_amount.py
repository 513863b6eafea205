"""portal.lib.money.parse_amount: the one rule for amounts people type (forms and the API)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import translation

from portal.lib.money import AmountError, MoneyError, parse_amount


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("10", "EUR", Decimal("10")),
        (" 10.5 ", "EUR", Decimal("10.5")),
        ("10.50", "TWD", Decimal("10.50")),
        ("+3", "EUR", Decimal("3")),
        ("10.", "EUR", Decimal("10")),
        (".25", "EUR", Decimal("0.25")),
        ("1000", "JPY", Decimal("1000")),
        ("1.234", "KWD", Decimal("1.234")),  # three minor digits
        ("9999999999999999.99", "EUR", Decimal("9999999999999999.99")),  # 18 digits: the most
    ],
)
def test_a_plain_amount_is_taken_exactly(text: str, currency: str, amount: Decimal) -> None:
    assert parse_amount(text, currency) == amount


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "EUR", "Enter a number."),
        ("ten", "EUR", "Enter a number."),
        ("1,000", "EUR", "Enter a number."),  # a thousand, or one? never guessed
        ("1 000", "EUR", "Enter a number."),
        ("1e3", "EUR", "Enter a number."),
        ("NaN", "EUR", "Enter a number."),
        ("Infinity", "EUR", "Enter a number."),
        ("-inf", "EUR", "Enter a number."),
        ("1.2.3", "EUR", "Enter a number."),
        ("0", "EUR", "Enter an amount above zero."),
        ("0.00", "EUR", "Enter an amount above zero."),
        ("-5", "EUR", "Enter an amount above zero."),
        ("10.005", "TWD", "Ensure that there are no more than 2 decimal places."),
        ("10.50", "EUR", None),  # two decimals fit
        ("1.5", "JPY", "Ensure that there are no more than 0 decimal places."),
        ("1.2345", "KWD", "Ensure that there are no more than 3 decimal places."),
        ("10000000000000000", "EUR", "Enter a smaller amount."),  # 10^18 cents
    ],
)
def test_a_bad_amount_is_refused_with_a_reason(
    text: str, currency: str, message: str | None
) -> None:
    if message is None:
        parse_amount(text, currency)
        return
    with translation.override("en"), pytest.raises(AmountError) as refused:
        parse_amount(text, currency)
    assert str(refused.value) == message


def test_a_signed_amount_may_be_negative_but_not_zero() -> None:
    assert parse_amount("-12.34", "EUR", signed=True) == Decimal("-12.34")
    with pytest.raises(AmountError):
        parse_amount("0", "EUR", signed=True)


def test_the_reason_is_in_the_readers_language() -> None:
    with translation.override("zh-hant"), pytest.raises(AmountError) as refused:
        parse_amount("10000000000000000", "EUR")
    assert str(refused.value) == "請輸入較小的金額。"


def test_an_unknown_currency_is_a_programming_error_not_a_typing_one() -> None:
    with pytest.raises(MoneyError) as raised:
        parse_amount("1", "XXY")
    assert not isinstance(raised.value, AmountError)
