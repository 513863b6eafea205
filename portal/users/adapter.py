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

# The address an invitation link was opened for, in the visitor's session.
INVITED_EMAIL_KEY = "portal_invited_email"


def invited_email_remember(request: HttpRequest, email: str) -> None:
    """Remember that this visitor proved `email` by opening an invitation sent to it.

    Not allauth's "stashed verified email": allauth adds that address to the new login as its
    verified primary whatever address was typed, so that a person signing up as b@ from a link
    sent to a@ became a@ without b@ ever being asked. Here only the typed address counts, and it
    is taken as verified only when it is the invited one.
    """
    request.session[INVITED_EMAIL_KEY] = email


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def is_email_verified(self, request: HttpRequest, email: str) -> bool:
        invited = request.session.get(INVITED_EMAIL_KEY) if request is not None else None
        if invited and str(invited).lower() == email.lower():
            return True
        return bool(super().is_email_verified(request, email))

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
