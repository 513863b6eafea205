"""Forms for member management; role choices are limited to what the acting person may grant."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import TenantAccess


def grantable_roles(access: TenantAccess) -> list[Role]:
    """Return the roles `access` may give to others (never more than its own)."""
    return [
        role
        for role in Role
        if role.value >= access.role.value
        and (role != Role.OWNER or access.has_scope(Scope.TENANT_MANAGE))
    ]


class _RoleChoiceMixin(forms.Form):
    role = forms.TypedChoiceField(label=_("Role"), coerce=int)

    def __init__(self, *args: Any, access: TenantAccess, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["role"])
        field.choices = [(r.value, r.label) for r in grantable_roles(access)]
        if not self.is_bound:
            field.initial = Role.VIEWER.value

    def clean_role(self) -> Role:
        return Role(self.cleaned_data["role"])


class InvitationForm(_RoleChoiceMixin):
    email = forms.EmailField(label=_("Email address"), max_length=254)
    field_order = ["email", "role"]


class RoleForm(_RoleChoiceMixin):
    pass


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("What uses the key, e.g. “Head-end system, north district”."),
    )
    expires_on = forms.DateField(
        label=_("Expires on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_(
            "The key stops working at the end of that day (UTC). Leave empty for a key that "
            "works until it is revoked."
        ),
    )
