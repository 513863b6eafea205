"""Tariffs, their versions (with a preview calculator), assignments and public holidays.

Every write goes through billing.services.tariffs and is audited.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from billing.models import Holiday, Tariff, TariffAssignment, TariffVersion
from billing.pricing import TariffError, parse_structure, preview_month
from billing.services.tariffs import (
    holiday_delete,
    holiday_save,
    tariff_assign,
    tariff_save,
    tariff_version_save,
)
from portal.adminsite import ServiceModelAdmin, changed
from portal.lib.money import format_minor
from portal.lib.rows import row_or_404, stored_row

STRUCTURE_HELP = _(
    'JSON. Flat: {"type": "flat", "rate": "0.25"}. Tiered per month: {"type": "tiered", '
    '"tiers": [{"up_to": "120", "rate": "0.10"}, {"up_to": null, "rate": "0.20"}]}. '
    'Time of use: {"type": "tou", "bands": [{"name": "peak", "days": "weekdays", "from": 7, '
    '"to": 23, "rate": "0.30"}, ...]} covering every hour of weekdays and weekends. Seasonal: '
    '{"type": "seasonal", "seasons": [{"name": "summer", "months": [6, 7, 8, 9], '
    '"structure": {...}}, ...]} covering all twelve months. Rates are strings with up to six '
    "decimals."
)


@admin.register(Tariff)
class TariffAdmin(ServiceModelAdmin):
    list_display = ("code", "name", "kind", "currency", "quantity_unit", "organisation")
    list_filter = ("kind", "currency")
    search_fields = ("code", "name")
    autocomplete_fields = ("organisation",)
    fields = ("code", "name", "kind", "currency", "quantity_unit", "organisation", "versions")
    readonly_fields = ("versions",)

    @admin.display(description=_("versions"))
    def versions(self, obj: Tariff) -> str:
        links = [
            format_html(
                '<a href="{}">{}</a>',
                reverse("admin:billing_tariffversion_change", args=[v.pk]),
                f"{v.valid_from} - {v.valid_to or '...'}",
            )
            for v in obj.versions.all()
        ]
        return format_html("<br>".join(["{}"] * len(links)), *links) if links else "—"

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Tariff:
        if not change:
            return tariff_save(instance=obj, actor=self.actor(request))
        original = stored_row(Tariff, obj.pk)
        fields = [f for f in form.changed_data if f in form.cleaned_data]
        return tariff_save(
            instance=original, changes=changed(form, fields), actor=self.actor(request)
        )


class TariffVersionForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = TariffVersion
        fields = (
            "tariff",
            "valid_from",
            "valid_to",
            "standing_charge",
            "tax_rate",
            "export_rate",
            "structure",
        )
        help_texts = {"structure": STRUCTURE_HELP}

    def clean_structure(self) -> Any:
        structure = self.cleaned_data["structure"]
        try:
            parse_structure(structure)
        except TariffError as error:
            raise forms.ValidationError(str(error)) from error
        return structure


class PreviewForm(forms.Form):
    month = forms.DateField(label=_("Month (any day in it)"), initial=dt.date.today)
    quantity = forms.DecimalField(
        label=_("Consumption in the month"), min_value=Decimal(0), max_digits=14, decimal_places=3
    )
    time_zone = forms.CharField(label=_("Time zone"), initial="Asia/Taipei")


@admin.register(TariffVersion)
class TariffVersionAdmin(ServiceModelAdmin):
    form = TariffVersionForm
    list_display = ("tariff", "valid_from", "valid_to", "standing_charge", "tax_rate", "preview")
    list_filter = ("tariff__kind",)
    search_fields = ("tariff__code", "tariff__name")
    autocomplete_fields = ("tariff",)

    @admin.display(description=_("preview"))
    def preview(self, obj: TariffVersion) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:billing_tariffversion_preview", args=[obj.pk]),
            _("calculate a bill"),
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:version_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="billing_tariffversion_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        version = row_or_404(TariffVersion, version_id, "tariff")
        form = PreviewForm(request.GET or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Preview"),
            "version": version,
            "form": form,
        }
        if form.is_valid():
            tariff = version.tariff
            try:
                priced = preview_month(
                    version,
                    month=form.cleaned_data["month"],
                    quantity=form.cleaned_data["quantity"],
                    time_zone=form.cleaned_data["time_zone"],
                    currency=tariff.currency,
                    unit=tariff.quantity_unit,
                )
            except (ValueError, LookupError) as error:
                form.add_error(None, str(error))
            else:
                context.update(
                    priced=priced,
                    month=form.cleaned_data["month"],
                    lines=[
                        {**vars(line), "amount_shown": format_minor(line.amount, tariff.currency)}
                        for line in priced.lines
                    ],
                    total=format_minor(priced.total, tariff.currency),
                )
        return TemplateResponse(request, "admin/billing/tariffversion/preview.html", context)

    def service_save(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> TariffVersion:
        if not change:
            return tariff_version_save(instance=obj, actor=self.actor(request))
        original = stored_row(TariffVersion, obj.pk, "tariff")
        fields = [f for f in form.changed_data if f in form.cleaned_data]
        return tariff_version_save(
            instance=original, changes=changed(form, fields), actor=self.actor(request)
        )


@admin.register(TariffAssignment)
class TariffAssignmentAdmin(ServiceModelAdmin):
    list_display = ("account", "service_point", "tariff", "valid_from", "valid_to")
    search_fields = ("account__number", "service_point__code", "tariff__code")
    autocomplete_fields = ("account", "service_point", "tariff")
    fields = ("account", "service_point", "tariff", "valid_from", "valid_to")
    readonly_fields = ("valid_to",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A change of tariff is a new assignment from a day on; history stays as it was.
        return False if obj is not None else super().has_change_permission(request, obj)

    def service_save(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> TariffAssignment:
        data = form.cleaned_data
        return tariff_assign(
            account=data["account"],
            service_point=data["service_point"],
            tariff=data["tariff"],
            valid_from=data["valid_from"],
            actor=self.actor(request),
        )


@admin.register(Holiday)
class HolidayAdmin(ServiceModelAdmin):
    list_display = ("day", "name")
    date_hierarchy = "day"
    fields = ("day", "name")

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Holiday:
        if not change:
            return holiday_save(instance=obj, actor=self.actor(request))
        original = stored_row(Holiday, obj.pk)
        return holiday_save(
            instance=original, changes=changed(form, ("day", "name")), actor=self.actor(request)
        )

    def service_delete(self, request: HttpRequest, obj: Any) -> None:
        holiday_delete(instance=obj, actor=self.actor(request))
