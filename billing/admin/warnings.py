"""Django admin: warning policies (edited through the audited services), and a read-only list of
shortage warnings with the delivery status of their notifications."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.postgres.forms import SimpleArrayField
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from billing.models import ShortageWarning, WarningPolicy
from billing.services.warnings import (
    WarningPolicyError,
    thresholds_clean,
    warning_policy_delete,
    warning_policy_save,
)
from portal.adminsite import ReadOnlyModelAdmin, ServiceModelAdmin, money_display
from portal.notifications.selectors import notifications_about


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
        "deliveries",
    )
    readonly_fields = fields

    balance_shown = money_display("balance", _("balance"), currency="account.currency")

    @admin.display(description=_("deliveries"))
    def deliveries(self, obj: ShortageWarning) -> str:
        # The notifications app knows the warning only by its key (it sits below billing).
        rows = notifications_about(key=f"warning:{obj.pk}")
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} · {} · {} {}",
                ((n.user, n.get_channel_display(), n.get_status_display(), n.error) for n in rows),
            )
            or "—"
        )
