"""Organisations, accounts, memberships and invitations in the staff admin.

Every save goes through portal.tenancy.services, so the admin obeys the same rules as the
portal (tree integrity, the last-owner rule) and every change lands in the audit log.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.adminsite import ReadOnlyModelAdmin, ServiceModelAdmin, changed
from portal.audit.actors import UserActor
from portal.lib.rows import stored_row
from portal.lib.timezones import default_time_zone
from portal.tenancy.exceptions import OrganisationTreeError
from portal.tenancy.models import (
    Account,
    Invitation,
    Membership,
    Organisation,
    OrganisationAPIKey,
)
from portal.tenancy.roles import Role
from portal.tenancy.services.accounts import (
    account_create,
    account_staff_view_record,
    account_update,
)
from portal.tenancy.services.api_keys import api_key_revoke
from portal.tenancy.services.members import (
    membership_change_role,
    membership_create,
    membership_remove,
)
from portal.tenancy.services.organisations import (
    organisation_create,
    organisation_move,
    organisation_update,
)


class OrganisationForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Organisation
        fields = ("name", "parent", "require_mfa", "time_zone")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone = self.fields["time_zone"]
        zone.required = False
        zone.help_text = _(
            "Times on the organisation's pages are shown in this zone, e.g. Asia/Taipei. "
            "Empty: the parent organisation's zone, or the site's at the top."
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("time_zone"):
            parent: Organisation | None = cleaned.get("parent")
            if self.instance.pk:
                cleaned["time_zone"] = self.instance.time_zone
            else:
                cleaned["time_zone"] = parent.time_zone if parent else default_time_zone()
        return cleaned

    def clean_parent(self) -> Organisation | None:
        parent: Organisation | None = self.cleaned_data.get("parent")
        if parent is not None and self.instance.pk and parent.path.startswith(self.instance.path):
            raise forms.ValidationError(OrganisationTreeError.default_message)
        return parent


@admin.register(Organisation)
class OrganisationAdmin(ServiceModelAdmin):
    form = OrganisationForm
    list_display = ("name", "parent", "depth", "require_mfa", "time_zone", "created_at")
    list_filter = ("require_mfa", "depth")
    search_fields = ("name",)
    autocomplete_fields = ("parent",)
    ordering = ("path",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Organisation:
        data = form.cleaned_data
        actor = self.actor(request)
        if not change:
            return organisation_create(
                name=data["name"],
                parent=data.get("parent"),
                require_mfa=data.get("require_mfa", False),
                time_zone=data["time_zone"],
                actor=actor,
            )
        organisation = stored_row(Organisation, obj.pk)
        organisation_update(
            organisation=organisation,
            changes=changed(form, ("name", "require_mfa", "time_zone")),
            actor=actor,
        )
        if "parent" in form.changed_data:
            organisation_move(organisation=organisation, parent=data.get("parent"), actor=actor)
        return organisation


@admin.register(Account)
class AccountAdmin(ServiceModelAdmin):
    list_display = ("number", "name", "payment_mode", "currency", "organisation", "closed_at")
    list_filter = ("payment_mode", "currency")
    search_fields = ("number", "name")
    autocomplete_fields = ("organisation",)
    ordering = ("number",)
    fields = (
        "number",
        "name",
        "payment_mode",
        "currency",
        "time_zone",
        "organisation",
        "closed_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The number is printed on bills and quoted on the phone: it never changes.
        return ("number",) if obj is not None else ()

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "number" in form.base_fields:
            form.base_fields["number"].required = False
            form.base_fields["number"].help_text = _("Leave empty to assign the next number.")
        return form

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def service_view(self, request: HttpRequest, obj: Any) -> None:
        account_staff_view_record(account=obj, actor=self.actor(request))

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Account:
        data = form.cleaned_data
        actor = self.actor(request)
        if not change:
            return account_create(
                name=data["name"],
                payment_mode=data["payment_mode"],
                currency=data["currency"],
                time_zone=data["time_zone"],
                organisation=data.get("organisation"),
                number=data.get("number") or None,
                actor=actor,
            )
        account = stored_row(Account, obj.pk)
        return account_update(
            account=account,
            changes=changed(
                form,
                ("name", "payment_mode", "currency", "time_zone", "organisation", "closed_at"),
            ),
            actor=actor,
        )


class MembershipForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Membership
        fields = ("user", "account", "organisation", "role")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.instance.pk and bool(data.get("account")) == bool(data.get("organisation")):
            raise forms.ValidationError(_("Choose either an account or an organisation."))
        return data


@admin.register(Membership)
class MembershipAdmin(ServiceModelAdmin):
    form = MembershipForm
    list_display = ("user", "account", "organisation", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "account__number", "account__name", "organisation__name")
    autocomplete_fields = ("user", "account", "organisation")
    list_select_related = ("user", "account", "organisation")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Only the role changes; a membership on another tenant is a new membership.
        return ("user", "account", "organisation") if obj is not None else ()

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Membership:
        data = form.cleaned_data
        actor = self.actor(request)
        if not change:
            return membership_create(
                user=data["user"],
                role=Role(data["role"]),
                account=data.get("account"),
                organisation=data.get("organisation"),
                actor=actor,
            )
        membership = stored_row(Membership, obj.pk, "user", "account", "organisation")
        return membership_change_role(membership=membership, role=Role(data["role"]), actor=actor)

    def service_delete(self, request: HttpRequest, obj: Any) -> None:
        membership = stored_row(Membership, obj.pk, "user", "account", "organisation")
        membership_remove(membership=membership, actor=self.actor(request))


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyModelAdmin):
    """Read-only: invitations are made and withdrawn by members in the portal."""

    list_display = (
        "email",
        "account",
        "organisation",
        "role",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    )
    list_filter = ("role",)
    search_fields = ("email", "account__number", "organisation__name")
    list_select_related = ("account", "organisation")
    exclude = ("nonce",)


@admin.register(OrganisationAPIKey)
class OrganisationAPIKeyAdmin(ReadOnlyModelAdmin):
    """Keys are made by the organisation's managers in the portal; staff see and revoke them."""

    list_display = (
        "name",
        "prefix",
        "organisation",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "organisation__name")
    list_select_related = ("organisation",)
    exclude = ("hashed_key",)
    actions = ["revoke"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tenancy.change_organisationapikey")

    @admin.action(description=_("Revoke the selected keys"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[OrganisationAPIKey]) -> None:
        actor = UserActor.from_request(request)
        keys = list(queryset.filter(revoked_at__isnull=True).select_related("organisation"))
        for api_key in keys:
            api_key_revoke(api_key=api_key, actor=actor, as_of=timezone.now())
        messages.success(request, _("%(count)d keys revoked.") % {"count": len(keys)})
