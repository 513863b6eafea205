"""Members and invitations of an account or an organisation.

The same pages serve both kinds of tenant: the account and organisation classes differ only in
which tenant they pass to the selectors and services.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from portal.audit.actors import UserActor
from portal.tenancy.exceptions import TenancyError
from portal.tenancy.forms import InvitationForm, RoleForm, grantable_roles
from portal.tenancy.models import Account, Invitation, Membership, Organisation
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import (
    TenantAccess,
    account_inherited_members,
    account_members,
    account_membership_get,
    invitation_get,
    organisation_inherited_members,
    organisation_members,
    organisation_membership_get,
    pending_invitations,
)
from portal.tenancy.services.invitations import invitation_create, invitation_revoke
from portal.tenancy.services.members import membership_change_role, membership_remove
from portal.tenancy.views.base import AccountView, OrganisationView


class _MemberOps:
    """Member management for one tenant, shared by the account and organisation views."""

    def __init__(self, view: AccountView | OrganisationView) -> None:
        self.view = view
        self.tenant: Account | Organisation = (
            view.account if isinstance(view, AccountView) else view.organisation
        )
        self.access: TenantAccess = view.access
        self.request = view.request

    @classmethod
    def of(cls, view: object) -> _MemberOps:
        """Build the operations for a resolved account or organisation view."""
        if not isinstance(view, AccountView | OrganisationView):
            raise TypeError(f"{type(view).__name__} is not a tenant view")
        return cls(view)

    def actor(self) -> UserActor:
        return UserActor.from_request(self.request)

    def tenant_kwargs(self) -> dict[str, Any]:
        if isinstance(self.tenant, Account):
            return {"account": self.tenant}
        return {"organisation": self.tenant}

    def members_url(self) -> str:
        if isinstance(self.tenant, Account):
            return reverse("tenancy:account_members", kwargs={"account_id": self.tenant.public_id})
        return reverse("tenancy:organisation_members", kwargs={"org_id": self.tenant.public_id})

    def membership(self, public_id: uuid.UUID) -> Membership:
        if isinstance(self.tenant, Account):
            found = account_membership_get(account=self.tenant, public_id=public_id)
        else:
            found = organisation_membership_get(organisation=self.tenant, public_id=public_id)
        if found is None:
            raise Http404
        return found

    def invitation(self, public_id: uuid.UUID) -> Invitation:
        found = invitation_get(public_id=public_id, **self.tenant_kwargs())
        if found is None:
            raise Http404
        return found

    def done(self, message: str) -> HttpResponseRedirect:
        messages.success(self.request, message)
        return HttpResponseRedirect(self.members_url())

    def failed(self, error: TenancyError | str) -> HttpResponseRedirect:
        text = str(error.message) if isinstance(error, TenancyError) else error
        messages.error(self.request, text)
        return HttpResponseRedirect(self.members_url())

    def page_context(self) -> dict[str, Any]:
        if isinstance(self.tenant, Account):
            direct = account_members(account=self.tenant)
            inherited = account_inherited_members(account=self.tenant)
        else:
            direct = organisation_members(organisation=self.tenant)
            inherited = organisation_inherited_members(organisation=self.tenant)
        return {
            "members": list(direct),
            "inherited": list(inherited),
            "invitations": list(pending_invitations(**self.tenant_kwargs())),
            "invite_form": InvitationForm(access=self.access),
            "grantable": grantable_roles(self.access),
            "tenant": self.tenant,
            "members_url": self.members_url(),
        }

    def invite(self) -> HttpResponse:
        form = InvitationForm(self.request.POST, access=self.access)
        if not form.is_valid():
            return self.failed("; ".join(str(e) for errs in form.errors.values() for e in errs))
        try:
            invitation = invitation_create(
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=self.actor(),
                by=self.access,
                **self.tenant_kwargs(),
            )
        except TenancyError as error:
            return self.failed(error)
        return self.done(_("Invitation sent to %(email)s.") % {"email": invitation.email})

    def change_role(self, membership_id: uuid.UUID) -> HttpResponse:
        membership = self.membership(membership_id)
        form = RoleForm(self.request.POST, access=self.access)
        if not form.is_valid():
            return self.failed(_("Choose a role you may give."))
        try:
            membership_change_role(
                membership=membership,
                role=form.cleaned_data["role"],
                actor=self.actor(),
                by=self.access,
            )
        except TenancyError as error:
            return self.failed(error)
        return self.done(_("The role of %(email)s was changed.") % {"email": membership.user.email})

    def remove(self, membership_id: uuid.UUID) -> HttpResponse:
        membership = self.membership(membership_id)
        email = membership.user.email
        try:
            membership_remove(membership=membership, actor=self.actor(), by=self.access)
        except TenancyError as error:
            return self.failed(error)
        return self.done(_("%(email)s was removed.") % {"email": email})

    def revoke(self, invitation_id: uuid.UUID) -> HttpResponse:
        invitation = self.invitation(invitation_id)
        try:
            invitation_revoke(
                invitation=invitation, actor=self.actor(), by=self.access, as_of=timezone.now()
            )
        except TenancyError as error:
            return self.failed(error)
        return self.done(
            _("The invitation of %(email)s was withdrawn.") % {"email": invitation.email}
        )


# --- The pages, once per kind of tenant ---------------------------------------------------
# The handler mixins hold the behaviour; each concrete class picks the tenant base and states
# the scope, so the URL walk and the cross-tenant probe see ordinary scoped views.


class _MembersPage:
    template_name: str | None = "tenancy/members.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        ops = _MemberOps.of(self)
        return ops.view.render_to_response(ops.view.get_context_data(**ops.page_context()))


class _InvitePost:
    http_method_names: Sequence[str] = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _MemberOps.of(self).invite()


class _RolePost:
    http_method_names: Sequence[str] = ["post"]

    def post(
        self, request: HttpRequest, *args: Any, membership_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        return _MemberOps.of(self).change_role(membership_id)


class _RemovePost:
    http_method_names: Sequence[str] = ["post"]

    def post(
        self, request: HttpRequest, *args: Any, membership_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        return _MemberOps.of(self).remove(membership_id)


class _RevokePost:
    http_method_names: Sequence[str] = ["post"]

    def post(
        self, request: HttpRequest, *args: Any, invitation_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        return _MemberOps.of(self).revoke(invitation_id)


_WRITE = {"POST": Scope.MEMBERS_MANAGE}


class AccountMembersView(_MembersPage, AccountView):
    required_scope = Scope.MEMBERS_MANAGE


class AccountInviteView(_InvitePost, AccountView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE


class AccountMemberRoleView(_RolePost, AccountView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE


class AccountMemberRemoveView(_RemovePost, AccountView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE


class AccountInvitationRevokeView(_RevokePost, AccountView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE


class OrganisationMembersView(_MembersPage, OrganisationView):
    required_scope = Scope.MEMBERS_MANAGE


class OrganisationInviteView(_InvitePost, OrganisationView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE


class OrganisationMemberRoleView(_RolePost, OrganisationView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE


class OrganisationMemberRemoveView(_RemovePost, OrganisationView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE


class OrganisationInvitationRevokeView(_RevokePost, OrganisationView):
    required_scope = Scope.MEMBERS_MANAGE
    method_scopes = _WRITE
