"""Forms of the billing pages and admin actions: amounts typed in major units of a currency.

An amount is refused, never rounded, when it has more decimals than the currency has minor
units (10.005 TWD is a typing mistake, not 10.01). Forms that start a write carry a hidden
idempotency key made when the form was shown, so a double submit makes one change.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from billing.models import Notification, NotificationPreference
from billing.services.notifications import PHONE_RE, notification_preferences_set
from portal.audit.actors import Actor
from portal.lib.money import format_money, from_minor, minor_exponent, to_minor
from portal.users.models import User


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

    def clean_amount(self) -> Decimal | None:
        amount: Decimal | None = self.cleaned_data.get("amount")
        if amount is None:
            return None  # not given, where the amount is optional (a top-up's preset)
        if amount == 0 or (amount < 0 and not self.signed):
            raise forms.ValidationError(_("Enter an amount above zero."))
        return amount

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


class NotificationPreferencesForm(forms.Form):
    """A member's own notification choices: email and SMS per topic, one mobile number and one
    set of quiet hours (stored on every topic's preference, as the sender reads them).

    Quiet hours are the site's default, the member's own (local time of each account), or
    none at all (stored as equal start and end, which the sender reads as "no quiet time").
    """

    QUIET_DEFAULT = "default"
    QUIET_CUSTOM = "custom"
    QUIET_NONE = "none"

    phone = forms.CharField(
        label=_("Mobile number"),
        required=False,
        max_length=20,
        help_text=_("For text messages, in international form, for example +886912345678."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )
    quiet = forms.ChoiceField(label=_("Quiet hours"), widget=forms.RadioSelect)
    quiet_start = forms.TimeField(
        label=_("Quiet from"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_end = forms.TimeField(
        label=_("Quiet until"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )

    def __init__(
        self, *args: Any, stored: Mapping[str, NotificationPreference | None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.stored = stored
        default_from, default_until = settings.NOTIFICATION_QUIET_HOURS
        quiet_field = self.fields["quiet"]
        assert isinstance(quiet_field, forms.ChoiceField)  # noqa: S101 - declared above
        quiet_field.choices = [
            (
                self.QUIET_DEFAULT,
                _("The usual quiet hours, %(start)s to %(end)s")
                % {"start": default_from, "end": default_until},
            ),
            (self.QUIET_CUSTOM, _("My own quiet hours")),
            (self.QUIET_NONE, _("None: tell me at any hour")),
        ]
        for topic, label in Notification.Topic.choices:
            pref = stored.get(topic)
            self.fields[f"email_{topic}"] = forms.BooleanField(
                label=_("%(topic)s by email") % {"topic": label},
                required=False,
                initial=pref.email if pref else True,
            )
            self.fields[f"sms_{topic}"] = forms.BooleanField(
                label=_("%(topic)s by text message") % {"topic": label},
                required=False,
                initial=pref.sms if pref else False,
            )
        for name, field in self.fields.items():
            if isinstance(field, forms.BooleanField):
                field.widget.attrs["class"] = "form-check-input"
            elif name != "quiet":
                field.widget.attrs["class"] = "form-control"
            if field.help_text:
                field.widget.attrs["aria-describedby"] = f"id_{name}-help"
        known = [p for topic in Notification.Topic.values if (p := stored.get(topic))]
        self.fields["phone"].initial = next((p.phone for p in known if p.phone), "")
        first = known[0] if known else None
        if first is None or first.quiet_start is None or first.quiet_end is None:
            self.fields["quiet"].initial = self.QUIET_DEFAULT
        elif first.quiet_start == first.quiet_end:
            self.fields["quiet"].initial = self.QUIET_NONE
        else:
            self.fields["quiet"].initial = self.QUIET_CUSTOM
            self.fields["quiet_start"].initial = first.quiet_start
            self.fields["quiet_end"].initial = first.quiet_end

    def full_clean(self) -> None:
        super().full_clean()
        # Bootstrap shows a field's message only next to an input marked invalid; the input
        # names its message for screen readers.
        for name in self.errors:
            if name in self.fields:
                attrs = self.fields[name].widget.attrs
                attrs["class"] = f"{attrs.get('class', '')} is-invalid".strip()
                described = [self[name].auto_id + "-error"]
                if self.fields[name].help_text:
                    described.append(self[name].auto_id + "-help")
                attrs["aria-describedby"] = " ".join(described)

    def topic_rows(self) -> list[tuple[str, forms.BoundField, forms.BoundField]]:
        """(topic label, email checkbox, SMS checkbox) per topic, for the table."""
        return [
            (str(label), self[f"email_{topic}"], self[f"sms_{topic}"])
            for topic, label in Notification.Topic.choices
        ]

    def clean_phone(self) -> str:
        # The service's own normalisation, so that what is checked is what is stored.
        phone = str(self.cleaned_data.get("phone") or "")
        phone = phone.replace(" ", "").replace("-", "").strip()
        if phone and not PHONE_RE.match(phone):
            raise forms.ValidationError(
                _("Give the mobile number in international form, for example +886912345678.")
            )
        return phone

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        wants_sms = any(cleaned.get(f"sms_{topic}") for topic in Notification.Topic.values)
        if wants_sms and "phone" in cleaned and not cleaned["phone"]:
            self.add_error("phone", _("Text messages need a mobile number."))
        if cleaned.get("quiet") == self.QUIET_CUSTOM:
            start, end = cleaned.get("quiet_start"), cleaned.get("quiet_end")
            if start is None and "quiet_start" not in self.errors:
                self.add_error("quiet_start", _("Give the time the quiet hours start."))
            if end is None and "quiet_end" not in self.errors:
                self.add_error("quiet_end", _("Give the time the quiet hours end."))
            if start is not None and start == end:
                self.add_error(
                    "quiet_end",
                    _(
                        "The quiet hours cannot start and end at the same time. To be told "
                        "at any hour, choose “None”."
                    ),
                )
        return cleaned

    def _quiet(self) -> tuple[dt.time | None, dt.time | None]:
        quiet = self.cleaned_data["quiet"]
        if quiet == self.QUIET_CUSTOM:
            return self.cleaned_data["quiet_start"], self.cleaned_data["quiet_end"]
        if quiet == self.QUIET_NONE:
            return dt.time(0), dt.time(0)
        return None, None

    def changes(self) -> list[dict[str, Any]]:
        """The service arguments of every topic whose stored choice differs from the form."""
        quiet_start, quiet_end = self._quiet()
        phone = self.cleaned_data["phone"]
        changed = []
        for topic in Notification.Topic.values:
            wanted = {
                "topic": topic,
                "email": bool(self.cleaned_data[f"email_{topic}"]),
                "sms": bool(self.cleaned_data[f"sms_{topic}"]),
                "phone": phone,
                "quiet_start": quiet_start,
                "quiet_end": quiet_end,
            }
            pref = self.stored.get(topic)
            # No stored preference: the sender's defaults (email on, SMS off) apply.
            current = {
                "topic": topic,
                "email": pref.email if pref else True,
                "sms": pref.sms if pref else False,
                "phone": pref.phone if pref else "",
                "quiet_start": pref.quiet_start if pref else None,
                "quiet_end": pref.quiet_end if pref else None,
            }
            if wanted != current:
                changed.append(wanted)
        return changed

    def save(self, *, user: User, actor: Actor) -> int:
        """Save every changed topic through the service (each audited); all or nothing.
        Return how many topics changed.

        :raises NotificationError: if the service refuses one (the form checks the same rules).
        """
        return notification_preferences_set(user=user, changes=self.changes(), actor=actor)
