"""The fleet, imports, readings, events and commands in the staff admin.

Every change goes through meters.services and is audited: fleet objects with their changed
fields, reading corrections with their mandatory reason, uploads, acknowledgements, commands.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from meters.admin_selectors import reading_edit_latest
from meters.exceptions import MeterError
from meters.ingest.formats import format_for_name
from meters.ingest.formats.dsmr import SPEC_CHOICES
from meters.models import (
    ImportBatch,
    ImportRowError,
    Meter,
    MeterCommand,
    MeterEvent,
    MeterInstallation,
    Quality,
    ReadingConflict,
    ReadingEdit,
    Register,
    Rule,
    ServicePoint,
    Supply,
)
from meters.selectors.readings import register_recent_readings
from meters.services.events import meter_event_acknowledge
from meters.services.fleet import fleet_save
from meters.services.imports import batch_create
from meters.services.readings import reading_edit
from meters.services.supply import meter_command_create, supply_start, supply_update
from portal.adminsite import ReadOnlyModelAdmin, ServiceModelAdmin, changed
from portal.audit.actors import UserActor
from portal.lib.rows import stored_row
from portal.lib.timezones import time_zone_choices


class FleetAdmin(ServiceModelAdmin):
    """Service points, meters, registers and installations: saved by fleet_save."""

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        actor = self.actor(request)
        if not change:
            return fleet_save(instance=obj, actor=actor)
        original = stored_row(type(obj), obj.pk)
        fields = [f for f in form.changed_data if f in form.cleaned_data]
        return fleet_save(instance=original, changes=changed(form, fields), actor=actor)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The fleet's history (readings, bills) refers to it: retire, never delete.
        return False


@admin.register(ServicePoint)
class ServicePointAdmin(FleetAdmin):
    list_display = ("code", "kind", "address", "time_zone", "created_at")
    list_filter = ("kind",)
    search_fields = ("code", "address")
    fields = ("code", "kind", "address", "time_zone")


class RegisterInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Register
    fields = ("code", "direction", "unit", "series", "interval_seconds", "is_main")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Meter)
class MeterAdmin(FleetAdmin):
    list_display = (
        "serial",
        "kind",
        "communication",
        "battery_percent",
        "last_contact_at",
        "valve_state",
    )
    list_filter = ("kind", "communication", "valve_state")
    search_fields = ("serial", "dev_eui")
    autocomplete_fields = ("organisation",)
    fields = (
        "serial",
        "kind",
        "communication",
        "dev_eui",
        "organisation",
        "max_rate",
        "battery_percent",
        "last_contact_at",
        "valve_state",
    )
    readonly_fields = ("battery_percent", "last_contact_at", "valve_state")
    inlines = [RegisterInline]


@admin.register(Register)
class RegisterAdmin(FleetAdmin):
    list_display = ("__str__", "direction", "unit", "series", "interval_seconds", "is_main")
    list_filter = ("direction", "unit", "series")
    search_fields = ("meter__serial", "code", "obis")
    autocomplete_fields = ("meter",)
    fields = (
        "meter",
        "code",
        "direction",
        "tariff_rate",
        "unit",
        "series",
        "dials",
        "display_unit",
        "multiplier",
        "wrap_value",
        "obis",
        "interval_seconds",
        "is_main",
        "stuck_hours",
        "recent_readings",
    )
    readonly_fields = ("wrap_value", "recent_readings")

    @admin.display(description=_("recent readings"))
    def recent_readings(self, obj: Register) -> str:
        if not obj.pk:
            return "-"
        rows = register_recent_readings(register=obj, limit=24)
        if not rows:
            return "-"
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            _("time"),
            _("register value"),
            _("interval consumption"),
            _("quality"),
            _("rules that fired"),
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        r.ts.isoformat(),
                        r.value,
                        r.delta,
                        Quality(r.quality).label,
                        ", ".join(rule.name or "" for rule in Rule(r.flags)).lower(),
                    )
                    for r in rows
                ),
            ),
        )


@admin.register(MeterInstallation)
class MeterInstallationAdmin(FleetAdmin):
    list_display = ("meter", "service_point", "installed_at", "removed_at")
    search_fields = ("meter__serial", "service_point__code")
    autocomplete_fields = ("meter", "service_point")
    fields = ("meter", "service_point", "installed_at", "removed_at")


@admin.register(Supply)
class SupplyAdmin(ServiceModelAdmin):
    list_display = ("account", "service_point", "start", "end")
    search_fields = ("account__number", "service_point__code")
    autocomplete_fields = ("account", "service_point")
    fields = ("account", "service_point", "start", "end")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("account", "service_point") if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Supply:
        data = form.cleaned_data
        if not change:
            return supply_start(
                account=data["account"],
                service_point=data["service_point"],
                start=data["start"],
                end=data.get("end"),
                actor=self.actor(request),
            )
        supply = stored_row(Supply, obj.pk, "account", "service_point")
        return supply_update(
            supply=supply, changes=changed(form, ("start", "end")), actor=self.actor(request)
        )


# --- Imports ------------------------------------------------------------------------------


class UploadForm(forms.Form):
    file = forms.FileField(label=_("File"))
    format = forms.ChoiceField(
        label=_("Format"),
        choices=[("", _("from the file name")), *ImportBatch.Format.choices],
        required=False,
    )
    register_meters = forms.BooleanField(
        label=_("Register unknown meters on new service points"), required=False
    )
    time_zone = forms.ChoiceField(
        label=_("Time zone of new service points"),
        choices=[("", _("the organisation's or the site's")), *time_zone_choices()],
        required=False,
        help_text=_("Used where the file states no zone of its own."),
    )
    read_at = forms.DateTimeField(
        label=_("Read time for DSMR 2.2/3 telegrams (UTC)"), required=False
    )
    meter_serial = forms.CharField(
        label=_("Meter (DSMR telegrams without an identifier)"), max_length=64, required=False
    )
    dsmr_spec = forms.ChoiceField(
        label=_("DSMR telegram specification"),
        choices=[("", _("from each telegram")), *((name, name) for name in SPEC_CHOICES)],
        required=False,
    )


class RowErrorInline(admin.TabularInline):  # type: ignore[type-arg]
    model = ImportRowError
    fields = ("line", "code", "problem")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("line", "pk")

    @admin.display(description=_("message"))
    def problem(self, obj: ImportRowError) -> str:
        return obj.text

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[ImportRowError]:
        ids = (
            super().get_queryset(request).order_by("line", "pk").values_list("pk", flat=True)[:200]
        )
        return super().get_queryset(request).filter(pk__in=list(ids))


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyModelAdmin):
    list_display = (
        "created_at",
        "original_name",
        "format",
        "source",
        "status",
        "seen",
        "inserted",
        "duplicate",
        "conflicting",
        "rejected",
        "attempts",
        "error_class",
        "organisation",
    )
    list_filter = ("status", "format", "source")
    # Staff look up a failure by the exception's class (psycopg.errors.NumericValueOutOfRange).
    search_fields = ("original_name", "sha256", "public_id", "error_class")
    date_hierarchy = "created_at"
    inlines = [RowErrorInline]
    exclude = ("payload_path",)
    change_list_template = "admin/meters/importbatch/change_list.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "upload/",
                self.admin_site.admin_view(self.upload_view),
                name="meters_importbatch_upload",
            ),
            *super().get_urls(),
        ]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("meters.add_importbatch"):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            fmt = form.cleaned_data["format"] or format_for_name(upload.name)
            if fmt is None:
                form.add_error("format", _("Choose the format: the file name does not tell."))
            else:
                try:
                    batch = batch_create(
                        source=ImportBatch.Source.ADMIN,
                        fmt=fmt,
                        content=upload,
                        original_name=upload.name,
                        actor=self.actor(request),
                        register_meters=form.cleaned_data["register_meters"],
                        time_zone=form.cleaned_data["time_zone"],
                        read_at=form.cleaned_data["read_at"],
                        meter_serial=form.cleaned_data["meter_serial"].strip(),
                        dsmr_spec=form.cleaned_data["dsmr_spec"],
                        as_of=timezone.now(),
                    )
                except MeterError as error:
                    form.add_error(None, str(error.message))
                else:
                    messages.success(request, _("The file was queued for import."))
                    return HttpResponseRedirect(
                        reverse("admin:meters_importbatch_change", args=[batch.pk])
                    )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.model._meta,
            "title": _("Upload readings"),
        }
        return TemplateResponse(request, "admin/meters/importbatch/upload.html", context)

    def actor(self, request: HttpRequest) -> UserActor:
        return UserActor.from_request(request)


# --- Readings -----------------------------------------------------------------------------


class ReadingEditForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = ReadingEdit
        fields = ("register", "ts", "new_value", "new_delta", "reason")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("new_value") is None and data.get("new_delta") is None:
            raise ValidationError(_("Give a new register value or a new interval consumption."))
        return data


@admin.register(ReadingEdit)
class ReadingEditAdmin(ServiceModelAdmin):
    """Corrections: a new one is made here (the original stays), old ones are read-only."""

    form = ReadingEditForm
    list_display = (
        "register",
        "ts",
        "old_value",
        "new_value",
        "old_delta",
        "new_delta",
        "edited_by",
        "created_at",
    )
    search_fields = ("register__meter__serial", "reason")
    autocomplete_fields = ("register",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        reading_edit(
            register=data["register"],
            ts=data["ts"],
            new_value=data.get("new_value"),
            new_delta=data.get("new_delta"),
            reason=data["reason"],
            actor=self.actor(request),
        )
        return reading_edit_latest(register=data["register"], ts=data["ts"])


@admin.register(ReadingConflict)
class ReadingConflictAdmin(ReadOnlyModelAdmin):
    list_display = (
        "register",
        "ts",
        "existing_value",
        "value",
        "existing_delta",
        "delta",
        "batch",
        "created_at",
        "resolved_at",
    )
    list_filter = ("resolved_at",)
    search_fields = ("register__meter__serial",)


# --- Events and commands ------------------------------------------------------------------


@admin.register(MeterEvent)
class MeterEventAdmin(ReadOnlyModelAdmin):
    list_display = (
        "occurred_at",
        "kind",
        "severity",
        "meter",
        "account",
        "acknowledged_at",
        "notified_at",
    )
    list_filter = ("kind", "severity", ("acknowledged_at", admin.EmptyFieldListFilter))
    search_fields = ("meter__serial", "account__number")
    list_select_related = ("meter", "account")
    actions = ["acknowledge"]

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("meters.change_meterevent")

    @admin.action(description=_("Acknowledge the selected events"), permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: models.QuerySet[MeterEvent]) -> None:
        actor = UserActor.from_request(request)
        count = 0
        for event in queryset.filter(acknowledged_at__isnull=True):
            meter_event_acknowledge(event=event, actor=actor, as_of=timezone.now())
            count += 1
        messages.success(request, _("%(count)d events acknowledged.") % {"count": count})


class MeterCommandForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = MeterCommand
        fields = ("meter", "command", "reason")


@admin.register(MeterCommand)
class MeterCommandAdmin(ServiceModelAdmin):
    form = MeterCommandForm
    list_display = ("created_at", "meter", "command", "status", "reason", "requested_by_label")
    list_filter = ("status", "command")
    search_fields = ("meter__serial",)
    autocomplete_fields = ("meter",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        return meter_command_create(
            meter_id=data["meter"].pk,
            command=data["command"],
            reason=data["reason"],
            idempotency_key=f"admin:{request.user.pk}:{dt.datetime.now(dt.UTC).isoformat()}",
            actor=self.actor(request),
        )
