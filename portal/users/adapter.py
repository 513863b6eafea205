"""allauth adapter: audits refused (rate-limited) sign-ins and controls open sign-up."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from portal.audit.actors import RequestContext, SystemActor
from portal.audit.events import AuditEvent
from portal.users.services import auth_event_record


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            identifier = str(credentials.get("email") or credentials.get("username") or "")
            auth_event_record(
                event=AuditEvent.LOGIN_RATE_LIMITED,
                actor=SystemActor("anonymous", context=RequestContext.from_request(request)),
                data={"identifier": identifier[:254]},
            )
            raise

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.PORTAL_SIGNUP_OPEN)
