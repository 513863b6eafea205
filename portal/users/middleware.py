"""Session lifetime: 30 minutes idle and 12 hours absolute (docs/QUALITY.md), both configurable.

The idle clock is refreshed at most once per SESSION_ACTIVITY_RESOLUTION, so a busy page does
not rewrite its session row on every request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from portal.audit.actors import RequestContext, UserActor
from portal.audit.events import AuditEvent
from portal.users.models import User
from portal.users.services import auth_event_record

AUTH_AT = "portal_auth_at"
SEEN_AT = "portal_seen_at"
EXPIRED_NOTICE = "portal_session_expired"
# Background requests (htmx polling for progress) send this header: they must not keep an
# unattended session alive.
PASSIVE_HEADER = "X-Portal-Passive"


def _read(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


class SessionTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        now = timezone.now()
        user = request.user
        if isinstance(user, User):
            session = request.session
            auth_at = _read(session.get(AUTH_AT))
            seen_at = _read(session.get(SEEN_AT))
            reason = None
            if auth_at is not None and now - auth_at >= settings.SESSION_ABSOLUTE_TIMEOUT:
                reason = "absolute"
            elif seen_at is not None and now - seen_at >= settings.SESSION_IDLE_TIMEOUT:
                reason = "idle"
            if reason is not None:
                auth_event_record(
                    event=AuditEvent.SESSION_EXPIRED,
                    actor=UserActor(user=user, context=RequestContext.from_request(request)),
                    data={"reason": reason},
                )
                # Not auth.logout(): that would also record a sign-out the person never made.
                session.flush()
                session[EXPIRED_NOTICE] = reason
                request.user = AnonymousUser()
            elif (
                seen_at is None or now - seen_at >= settings.SESSION_ACTIVITY_RESOLUTION
            ) and request.headers.get(PASSIVE_HEADER) != "1":
                session[SEEN_AT] = now.isoformat()

        response = self.get_response(request)

        # A sign-in during this request starts both clocks.
        if isinstance(request.user, User) and AUTH_AT not in request.session:
            request.session[AUTH_AT] = now.isoformat()
            request.session[SEEN_AT] = now.isoformat()
        return response
