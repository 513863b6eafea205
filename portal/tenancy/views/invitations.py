"""Accepting an invitation from its emailed link.

The page is reached by people who may not have a login yet, so it is not tenant-scoped: the
token in the URL is the credential, and the page shows only what the invitation email already
said. It is on the reviewed public allowlist of the URLconf walk.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.generic.base import ContextMixin, TemplateResponseMixin, View

from portal.audit.actors import UserActor
from portal.tenancy.exceptions import InvitationInvalid, TenancyError
from portal.tenancy.models import Invitation
from portal.tenancy.roles import Role
from portal.tenancy.selectors import invitation_from_token
from portal.tenancy.services.invitations import invitation_accept
from portal.tenancy.views.base import model_url
from portal.users.adapter import invited_email_remember
from portal.users.models import User


class InvitationAcceptView(TemplateResponseMixin, ContextMixin, View):
    template_name = "tenancy/invitation_accept.html"
    http_method_names = ["get", "post"]

    def _state(self, invitation: Invitation) -> str:
        if invitation.accepted_at is not None:
            return "accepted"
        if invitation.revoked_at is not None:
            return "revoked"
        if invitation.expires_at <= timezone.now():
            return "expired"
        return "pending"

    def get(self, request: HttpRequest, *args: Any, token: str, **kwargs: Any) -> HttpResponse:
        try:
            invitation = invitation_from_token(token=token)
        except InvitationInvalid as error:
            return self.render_to_response(self.get_context_data(error=error.message), status=404)
        state = self._state(invitation)
        if state == "pending" and not request.user.is_authenticated:
            # Whoever holds the link received it at this address, so a login created from here
            # with THIS address needs no second verification email; any other address typed
            # at sign-up is verified as usual (portal.users.adapter).
            invited_email_remember(request, invitation.email)
        return self.render_to_response(
            self.get_context_data(
                invitation=invitation,
                tenant=invitation.tenant,
                role=Role(invitation.role).label,
                state=state,
            )
        )

    def post(self, request: HttpRequest, *args: Any, token: str, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not isinstance(user, User):
            return redirect_to_login(request.get_full_path())
        try:
            membership = invitation_accept(
                token=token, actor=UserActor.from_request(request), as_of=timezone.now()
            )
        except TenancyError as error:
            messages.error(request, str(error.message))
            return HttpResponseRedirect(request.path)
        tenant = membership.tenant
        messages.success(request, _("Welcome to %(tenant)s.") % {"tenant": tenant.name})
        return HttpResponseRedirect(model_url(tenant))
