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
from django.utils.translation import gettext_lazy as _

from portal.lib.money import from_minor, minor_exponent, to_minor


def _key() -> str:
    return uuid.uuid4().hex


class _AmountForm(forms.Form):
    amount = forms.DecimalField(label=_("Amount"), max_digits=18)
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64, initial=_key)
    signed = False

    def __init__(self, *args: Any, currency: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        places = minor_exponent(currency)
        # Rebuilt with the currency's places, so its validator refuses extra decimals.
        field = forms.DecimalField(label=_("Amount"), max_digits=18, decimal_places=places)
        field.widget.attrs.update({"step": str(from_minor(1, currency)), "inputmode": "decimal"})
        if not self.signed:
            field.widget.attrs["min"] = str(from_minor(1, currency))
        self.fields["amount"] = field
        field.help_text = _("In %(currency)s.") % {"currency": currency}

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount == 0 or (amount < 0 and not self.signed):
            raise forms.ValidationError(_("Enter an amount above zero."))
        return amount

    @property
    def minor(self) -> int:
        """The cleaned amount in minor units."""
        return to_minor(self.cleaned_data["amount"], self.currency)


class TopUpForm(_AmountForm):
    """A resident's top-up amount."""


class RefundForm(_AmountForm):
    """Staff: how much of a paid top-up to refund, and why."""

    reason = forms.CharField(label=_("Reason"), max_length=300)


class AdjustForm(_AmountForm):
    """Staff: a manual credit (positive) or debit (negative) of a wallet, and why."""

    signed = True
    reason = forms.CharField(label=_("Reason"), max_length=300)
