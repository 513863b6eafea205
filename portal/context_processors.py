"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from portal.users.middleware import EXPIRED_NOTICE


def portal(request: HttpRequest) -> dict[str, object]:
    """Expose the site name, and once, the notice that the session timed out."""
    session = getattr(request, "session", None)
    expired = session.pop(EXPIRED_NOTICE, None) if session is not None else None
    return {"site_name": settings.PORTAL_SITE_NAME, "session_expired": expired}
