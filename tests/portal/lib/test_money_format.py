"""The one money formatter (babel, in the active language's locale) in both languages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import translation

from portal.lib.money import babel_locale, format_amount, format_money

LANGUAGES = ("en", "zh-hant")


@pytest.mark.parametrize("language", LANGUAGES)
def test_money_reads_the_same_in_both_languages(language: str) -> None:
    with translation.override(language):
        assert format_money(119280, "TWD") == "1,192.80 TWD"
        assert format_money(-26189, "TWD") == "-261.89 TWD"
        assert format_money(0, "EUR") == "0.00 EUR"
        assert format_money(1234567, "JPY") == "1,234,567 JPY"
        assert format_money(1234567, "KWD") == "1,234.567 KWD"


@pytest.mark.parametrize("language", LANGUAGES)
def test_amounts_round_half_up_to_the_minor_unit_not_half_even(language: str) -> None:
    with translation.override(language):
        assert format_amount(Decimal("0.125"), "EUR") == "0.13"
        assert format_amount(Decimal("-0.125"), "EUR") == "-0.13"
        assert format_amount(Decimal("2.5"), "JPY") == "3"
        # ISO 4217 gives IQD three decimals where CLDR shows none: pages show what is stored.
        assert format_amount(Decimal("1.5"), "IQD") == "1.500"


def test_django_languages_map_to_babel_locales() -> None:
    assert str(babel_locale("en")) == "en"
    assert str(babel_locale("zh-hant")) == "zh_Hant"
    assert str(babel_locale("xx-nonsense")) == "en"
    with translation.override("zh-hant"):
        assert str(babel_locale()) == "zh_Hant"
