"""The one page of the users app: confirming a staff member's first second factor by email."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.generic.base import ContextMixin, TemplateResponseMixin, View

from portal.audit.actors import UserActor
from portal.users.models import User
from portal.users.services import StaffFactorInvalid, staff_factor_confirm


class StaffFactorConfirmView(LoginRequiredMixin, TemplateResponseMixin, ContextMixin, View):
    """GET shows what is confirmed; POST confirms. The token is the mailbox's proof and the
    session the password's: both are needed, and only for the person's own factor."""

    template_name = "users/staff_factor_confirm.html"
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, *args: Any, token: str, **kwargs: Any) -> HttpResponse:
        return self.render_to_response(self.get_context_data())

    def post(self, request: HttpRequest, *args: Any, token: str, **kwargs: Any) -> HttpResponse:
        user = request.user
        assert isinstance(user, User)  # noqa: S101 - LoginRequiredMixin
        try:
            staff_factor_confirm(
                token=token, user=user, actor=UserActor.from_request(request), as_of=timezone.now()
            )
        except StaffFactorInvalid as error:
            return self.render_to_response(
                self.get_context_data(error=str(error.message)), status=404
            )
        messages.success(request, _("Your second factor is confirmed."))
        return HttpResponseRedirect(reverse("admin:index"))
