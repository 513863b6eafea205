"""Django admin: warning policies (edited through the audited services), and read-only lists of
shortage warnings and notifications with their delivery status."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.postgres.forms import SimpleArrayField
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from billing.models import Notification, ShortageWarning, WarningPolicy
from billing.services.warnings import (
    WarningPolicyError,
    thresholds_clean,
    warning_policy_delete,
    warning_policy_save,
)
from portal.adminsite import ReadOnlyModelAdmin, ServiceModelAdmin, money_display


class WarningPolicyForm(forms.ModelForm[WarningPolicy]):
    thresholds = SimpleArrayField(
        forms.IntegerField(min_value=0),
        label=_("thresholds (days)"),
        help_text=_(
            "Days of credit left that warn, separated by commas, e.g. 7,3,1. The empty balance "
            "(0) always warns and is added if missing."
        ),
    )

    class Meta:
        model = WarningPolicy
        fields = ["organisation", "account", "thresholds"]

    def clean_thresholds(self) -> list[int]:
        try:
            return thresholds_clean(self.cleaned_data["thresholds"])
        except WarningPolicyError as error:
            raise forms.ValidationError(str(error.message)) from error

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.instance._state.adding:  # the tenant is read-only once the policy exists
            return cleaned
        if (cleaned.get("account") is None) == (cleaned.get("organisation") is None):
            raise forms.ValidationError(_("Choose either an organisation or an account."))
        return cleaned


@admin.register(WarningPolicy)
class WarningPolicyAdmin(ServiceModelAdmin):
    form = WarningPolicyForm
    list_display = ["thresholds_shown", "organisation", "account"]
    search_fields = ["organisation__name", "account__number", "account__name"]
    autocomplete_fields = ["organisation", "account"]

    @admin.display(description=_("thresholds (days)"))
    def thresholds_shown(self, obj: WarningPolicy) -> str:
        return ", ".join(str(days) for days in obj.thresholds)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A policy stays with its tenant; to move it, delete it and add another.
        return ["organisation", "account"] if obj is not None else []

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        return warning_policy_save(
            thresholds=form.cleaned_data["thresholds"],
            account=obj.account,
            organisation=obj.organisation,
            actor=self.actor(request),
        )

    def service_delete(self, request: HttpRequest, obj: Any) -> None:
        warning_policy_delete(policy=obj, actor=self.actor(request))


class DeliveryInline(admin.TabularInline[Notification, ShortageWarning]):
    model = Notification
    fields = ("user", "channel", "status", "error", "created_at", "sent_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ShortageWarning)
class ShortageWarningAdmin(ReadOnlyModelAdmin):
    list_display = [
        "created_at",
        "account",
        "threshold",
        "level",
        "crossing",
        "balance_shown",
        "days_left",
    ]
    list_filter = ["level", "threshold", "created_at"]
    search_fields = ["account__number", "account__name"]
    date_hierarchy = "created_at"
    list_select_related = ["account"]
    fields = (
        "account",
        "threshold",
        "crossing",
        "level",
        "balance_shown",
        "days_left",
        "created_at",
    )
    readonly_fields = fields
    inlines = [DeliveryInline]

    balance_shown = money_display("balance", _("balance"), currency="account.currency")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "topic", "channel", "status", "user", "account", "sent_at"]
    list_filter = ["status", "channel", "topic", "created_at"]
    search_fields = ["user__email", "account__number", "account__name", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["user", "account"]
    readonly_fields = ["warning", "bill"]
