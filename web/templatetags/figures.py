"""Money on pages, written as everywhere else: `{% load figures %}{{ amount|money:currency }}`.

Other figures use Django's `floatformat` with grouping (`{{ value|floatformat:"1g" }}`), which
portal/formats makes the same in every language.
"""

from __future__ import annotations

from decimal import Decimal

from django import template

from portal.lib.money import format_amount, format_money, to_minor

register = template.Library()


@register.filter
def amount(value: Decimal | None, currency: str) -> str:
    """`Decimal("1192.8")|amount:"TWD"` -> `1,192.80` (the currency's decimals, grouped)."""
    if value is None:
        return ""
    return format_amount(Decimal(value), currency)


@register.filter
def money(value: Decimal | None, currency: str) -> str:
    """`Decimal("1192.8")|money:"TWD"` -> `1,192.80 TWD`."""
    if value is None:
        return ""
    return format_money(to_minor(Decimal(value), currency), currency)
