"""An organisation's API keys: head-end systems send readings with them.

A new key is shown once, in the response to the form that created it; only its hash is kept.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from portal.lib.periods import local_midnight
from portal.tenancy.exceptions import TenancyError
from portal.tenancy.forms import ApiKeyForm
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import organisation_api_key_get, organisation_api_keys
from portal.tenancy.services.api_keys import api_key_create, api_key_revoke
from portal.tenancy.views.base import OrganisationView

_WRITE = {"POST": Scope.API_KEYS_MANAGE}
_FRESH_KEY = "portal.tenancy.fresh_api_key"


class OrganisationApiKeysView(OrganisationView):
    """List the organisation's keys, and create one."""

    required_scope = Scope.API_KEYS_MANAGE
    method_scopes = _WRITE
    template_name = "tenancy/api_keys.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # A key made a moment ago is shown once, after the redirect, so that reloading the page
        # neither shows it again nor makes another key.
        fresh = request.session.pop(_FRESH_KEY, None)
        extra: dict[str, Any] = {}
        if isinstance(fresh, dict) and fresh.get("org") == str(self.organisation.public_id):
            extra = {"new_key": fresh["key"], "new_key_name": fresh["name"]}
        response = self._page(ApiKeyForm(), **extra)
        if extra:
            response["Cache-Control"] = "no-store"
        return response

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ApiKeyForm(request.POST)
        if not form.is_valid():
            return self._page(form, status=400)
        expires_on: dt.date | None = form.cleaned_data["expires_on"]
        expires_at = None
        if expires_on is not None:
            # The key works through the whole of that day (UTC: machines' clocks, not people's).
            expires_at = local_midnight(expires_on + dt.timedelta(days=1), "UTC")
            if expires_at <= timezone.now():
                form.add_error("expires_on", _("Choose a day that is not over yet."))
                return self._page(form, status=400)
        try:
            api_key, key = api_key_create(
                organisation=self.organisation,
                name=form.cleaned_data["name"],
                expires_at=expires_at,
                actor=self.actor(),
                by=self.access,
            )
        except TenancyError as error:
            messages.error(request, str(error.message))
            return self._page(form, status=403)
        request.session[_FRESH_KEY] = {
            "org": str(self.organisation.public_id),
            "key": key,
            "name": api_key.name,
        }
        return HttpResponseRedirect(request.path)

    def _page(self, form: ApiKeyForm, status: int = 200, **extra: Any) -> HttpResponse:
        return self.render_to_response(
            self.get_context_data(
                form=form,
                api_keys=list(organisation_api_keys(organisation=self.organisation)),
                now=timezone.now(),
                **extra,
            ),
            status=status,
        )


class OrganisationApiKeyRevokeView(OrganisationView):
    required_scope = Scope.API_KEYS_MANAGE
    method_scopes = _WRITE
    http_method_names: Sequence[str] = ["post"]

    def post(
        self, request: HttpRequest, *args: Any, api_key_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        api_key = organisation_api_key_get(organisation=self.organisation, public_id=api_key_id)
        if api_key is None:
            raise Http404
        try:
            api_key_revoke(
                api_key=api_key, actor=self.actor(), by=self.access, as_of=timezone.now()
            )
        except TenancyError as error:
            messages.error(request, str(error.message))
        else:
            messages.success(request, _("The key %(name)s no longer works.") % {"name": api_key})
        return HttpResponseRedirect(
            reverse("tenancy:organisation_api_keys", kwargs={"org_id": self.organisation.public_id})
        )
