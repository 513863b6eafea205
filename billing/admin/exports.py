"""Residents' data exports, read-only: staff see who asked, when, and how it went, never the
file (only the resident downloads it, audited)."""

from __future__ import annotations

from django.contrib import admin

from billing.models import DataExport
from portal.adminsite import ReadOnlyModelAdmin


@admin.register(DataExport)
class DataExportAdmin(ReadOnlyModelAdmin):
    list_display = ("account", "requested_by_label", "status", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("account__number", "account__name", "requested_by_label")
    list_select_related = ("account",)
    ordering = ("-created_at",)
    exclude = ("file",)
    readonly_fields = (
        "account",
        "requested_by_label",
        "language",
        "status",
        "part",
        "rows_done",
        "rows_total",
        "attempts",
        "error",
        "size",
        "created_at",
        "started_at",
        "finished_at",
        "expires_at",
    )
