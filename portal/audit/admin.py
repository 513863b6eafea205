"""The audit log in the staff admin: read-only for everyone, superusers included."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from portal.adminsite import ReadOnlyModelAdmin
from portal.audit.events import AUDIT_EVENTS
from portal.audit.models import AuditCheckpoint, AuditLogEntry


class EventFilter(admin.SimpleListFilter):
    title = _("event")
    parameter_name = "event"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(e.value), spec.api_name) for e, spec in AUDIT_EVENTS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(event_type=int(value)) if value and value.isdigit() else queryset


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(ReadOnlyModelAdmin):
    list_display = (
        "id",
        "created_at",
        "chain",
        "event",
        "message",
        "actor_label",
        "account",
        "organisation",
        "ip_address",
    )
    list_filter = (EventFilter,)
    search_fields = ("actor_label", "target_id", "account__number", "organisation__name")
    date_hierarchy = "created_at"
    list_select_related = ("account", "organisation")
    ordering = ("-id",)
    show_full_result_count = False

    @admin.display(description=_("event"), ordering="event_type")
    def event(self, obj: AuditLogEntry) -> str:
        return obj.event_name

    @admin.display(description=_("what happened"))
    def message(self, obj: AuditLogEntry) -> str:
        return obj.display


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "created_at", "entry_id", "entries_verified")
    ordering = ("-id",)
