"""Django admin: the read-only list of notifications with their delivery status."""

from __future__ import annotations

from django.contrib import admin

from portal.adminsite import ReadOnlyModelAdmin
from portal.notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "topic", "channel", "status", "user", "account", "sent_at"]
    list_filter = ["status", "channel", "topic", "created_at"]
    search_fields = ["user__email", "account__number", "account__name", "key", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["user", "account"]
    readonly_fields = ["key", "texts"]
