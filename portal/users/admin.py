"""Users in the staff admin; changes go through portal.users.services and are audited."""

from __future__ import annotations

from typing import Any

from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from portal.adminsite import ReadOnlyModelAdmin, ServiceModelAdmin, changed
from portal.lib.rows import stored_row
from portal.users.models import SecondFactor, SignInSession, User
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
        original = stored_row(User, obj.pk)
        groups = data["groups"] if "groups" in form.changed_data else None
        return user_update(
            user=original,
            changes=changed(form, ("email", "name", "is_active", "is_staff", "is_superuser")),
            groups=groups,
            actor=self.actor(request),
        )


# allauth registers its sessions and authenticators under model names no catalog can translate;
# they are shown here through proxies with translated names, and read-only: a person ends their
# sessions and manages their second factors on their own "Login and security" pages.
admin.site.unregister(UserSession)
admin.site.unregister(Authenticator)


@admin.register(SignInSession)
class SignInSessionAdmin(ReadOnlyModelAdmin):
    list_display = ("person", "started", "last_seen", "ip_address", "browser")
    list_select_related = ("user",)
    search_fields = ("user__email", "ip")
    fields = list_display

    @admin.display(description=_("person"), ordering="user__email")
    def person(self, obj: SignInSession) -> str:
        return str(obj.user)

    @admin.display(description=_("started"), ordering="created_at")
    def started(self, obj: SignInSession) -> object:
        return obj.created_at

    @admin.display(description=_("last seen"), ordering="last_seen_at")
    def last_seen(self, obj: SignInSession) -> object:
        return obj.last_seen_at

    @admin.display(description=_("IP address"), ordering="ip")
    def ip_address(self, obj: SignInSession) -> object:
        return obj.ip

    @admin.display(description=_("browser"))
    def browser(self, obj: SignInSession) -> str:
        return str(obj.user_agent)


@admin.register(SecondFactor)
class SecondFactorAdmin(ReadOnlyModelAdmin):
    list_display = ("person", "kind", "added", "last_used")
    list_select_related = ("user",)
    search_fields = ("user__email",)
    fields = list_display

    @admin.display(description=_("person"), ordering="user__email")
    def person(self, obj: SecondFactor) -> str:
        return str(obj.user)

    @admin.display(description=_("kind"), ordering="type")
    def kind(self, obj: SecondFactor) -> str:
        return str(obj.get_type_display())

    @admin.display(description=_("added"), ordering="created_at")
    def added(self, obj: SecondFactor) -> object:
        return obj.created_at

    @admin.display(description=_("last used"), ordering="last_used_at")
    def last_used(self, obj: SecondFactor) -> object:
        return obj.last_used_at
