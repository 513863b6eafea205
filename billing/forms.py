"""Forms of the billing pages and admin actions: amounts typed in major units of a currency.

An amount is refused, never rounded, when it has more decimals than the currency has minor
units (10.005 TWD is a typing mistake, not 10.01). Forms that start a write carry a hidden
idempotency key made when the form was shown, so a double submit makes one change.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from portal.lib.money import AmountError, format_money, from_minor, parse_amount, to_minor


def _key() -> str:
    return uuid.uuid4().hex


class _AmountForm(forms.Form):
    # Text, parsed by portal.lib.money.parse_amount: the one rule for typed amounts.
    amount = forms.CharField(label=_("Amount"), widget=forms.NumberInput)
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64, initial=_key)
    signed = False

    def __init__(self, *args: Any, currency: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        field = self.fields["amount"]
        field.widget.attrs.update({"step": str(from_minor(1, currency)), "inputmode": "decimal"})
        if not self.signed:
            field.widget.attrs["min"] = str(from_minor(1, currency))
        field.help_text = _("In %(currency)s.") % {"currency": currency}

    def clean_amount(self) -> Decimal | None:
        text: str = self.cleaned_data.get("amount") or ""
        if not text.strip():
            return None  # not given, where the amount is optional (a top-up's preset)
        try:
            return parse_amount(text, self.currency, signed=self.signed)
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None

    @property
    def minor(self) -> int:
        """The cleaned amount in minor units."""
        return to_minor(self.cleaned_data["amount"], self.currency)


# Amounts offered as one click, in major units; other currencies get the default row. A
# preset above the site's maximum top-up is not offered.
TOPUP_PRESETS: dict[str, tuple[int, ...]] = {
    "TWD": (300, 500, 1000, 2000),
    "HKD": (100, 200, 500, 1000),
    "JPY": (1000, 3000, 5000, 10000),
}
TOPUP_PRESETS_DEFAULT = (10, 20, 50, 100)
# The smallest top-up, in major units: below it a card payment costs more than it brings.
TOPUP_MIN = 1
OTHER = "other"


class TopUpForm(_AmountForm):
    """A resident's top-up: one of the preset amounts, or another amount typed in.

    A typed amount wins over a chosen preset (it is what the person typed last); "Other"
    without a typed amount, or nothing at all, is an error.
    """

    preset = forms.ChoiceField(
        label=_("Choose an amount"), required=False, widget=forms.RadioSelect
    )

    field_order = ["preset", "amount", "idempotency_key"]

    def __init__(self, *args: Any, currency: str, **kwargs: Any) -> None:
        super().__init__(*args, currency=currency, **kwargs)
        self.minimum = Decimal(TOPUP_MIN)
        self.maximum = Decimal(settings.PAYMENT_TOPUP_MAX)
        self.presets = [
            Decimal(p)
            for p in TOPUP_PRESETS.get(currency, TOPUP_PRESETS_DEFAULT)
            if self.minimum <= p <= self.maximum
        ]
        choice_field = self.fields["preset"]
        assert isinstance(choice_field, forms.ChoiceField)  # noqa: S101 - declared above
        choice_field.choices = [
            *((str(p), format_money(to_minor(p, currency), currency)) for p in self.presets),
            (OTHER, _("Other")),
        ]
        amount = self.fields["amount"]
        amount.required = False
        amount.widget.attrs.update({"min": str(self.minimum), "max": str(self.maximum)})
        amount.help_text = _(
            "In %(currency)s, from %(min)s to %(max)s. A typed amount is used instead of the "
            "choice above."
        ) % {"currency": currency, "min": f"{self.minimum:,}", "max": f"{self.maximum:,}"}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "amount" not in cleaned:
            return cleaned  # the typed amount is malformed: its own error says why
        amount: Decimal | None = cleaned.get("amount")
        preset = cleaned.get("preset") or ""
        if amount is None and preset and preset != OTHER:
            amount = Decimal(preset)
        if amount is None:
            self.add_error(
                "amount",
                _("Type the amount to top up.")
                if preset == OTHER
                else _("Choose an amount or type one."),
            )
            return cleaned
        if amount < self.minimum:
            self.add_error(
                "amount",
                _("A top-up is at least %(min)s %(currency)s.")
                % {"min": self.minimum, "currency": self.currency},
            )
        elif amount > self.maximum:
            self.add_error(
                "amount",
                _("A single top-up is at most %(max)s %(currency)s.")
                % {"max": self.maximum, "currency": self.currency},
            )
        else:
            cleaned["amount"] = amount
        return cleaned


class RefundForm(_AmountForm):
    """Staff: how much of a paid top-up to refund, and why."""

    reason = forms.CharField(label=_("Reason"), max_length=300)


class AdjustForm(_AmountForm):
    """Staff: a manual credit (positive) or debit (negative) of a wallet, and why."""

    signed = True
    reason = forms.CharField(label=_("Reason"), max_length=300)
