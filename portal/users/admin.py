"""Users in the staff admin; changes go through portal.users.services and are audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from portal.adminsite import ServiceModelAdmin, changed
from portal.users.models import User
from portal.users.services import user_create, user_staff_view_record, user_update

_STAFF_ACCESS_FIELDS = ("is_staff", "is_superuser", "groups")


@admin.register(User)
class UserAdmin(ServiceModelAdmin):
    list_display = ("email", "name", "is_active", "is_staff", "is_superuser", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "name")
    ordering = ("email",)
    fields = ("email", "name", "is_active", *_STAFF_ACCESS_FIELDS, "last_login", "date_joined")
    readonly_fields = ("last_login", "date_joined")
    filter_horizontal = ("groups",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        # Only superusers grant or take away staff access.
        if not request.user.is_superuser:
            readonly += list(_STAFF_ACCESS_FIELDS)
        return readonly

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Support may help residents, not take over colleagues: staff and superuser records
        # are changed by superusers only (an email change would hand over the login).
        if obj is not None and (obj.is_staff or obj.is_superuser) and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # People are deactivated, not deleted: their audit trail and memberships stay whole.
        return False

    def service_view(self, request: HttpRequest, obj: Any) -> None:
        user_staff_view_record(user=obj, actor=self.actor(request))

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> User:
        data = form.cleaned_data
        if not change:
            return user_create(
                email=data["email"],
                name=data.get("name", ""),
                is_staff=data.get("is_staff", False),
                is_superuser=data.get("is_superuser", False),
                groups=data.get("groups") or [],
                # The person confirms the address at first sign-in.
                email_verified=False,
                actor=self.actor(request),
            )
        original = User.objects.get(pk=obj.pk)
        groups = data["groups"] if "groups" in form.changed_data else None
        return user_update(
            user=original,
            changes=changed(form, ("email", "name", "is_active", "is_staff", "is_superuser")),
            groups=groups,
            actor=self.actor(request),
        )
