"""Celery interfaces of tenancy: thin, idempotent, ids in, one service call."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from portal.audit.actors import SystemActor
from portal.celery import app
from portal.tenancy.selectors import invitation_get_by_id
from portal.tenancy.services.invitations import invitation_email_send, invitations_expire


@app.task(acks_late=True)
def invitation_send_task(*, invitation_id: int, **kwargs: object) -> bool:
    """Email an invitation; a redelivered or stale task for a used invitation sends nothing."""
    invitation = invitation_get_by_id(invitation_id=invitation_id)
    if invitation is None:
        return False
    return invitation_email_send(
        invitation=invitation, base_url=settings.PORTAL_BASE_URL, as_of=timezone.now()
    )


@app.task(acks_late=True)
def invitations_expire_task(**kwargs: object) -> int:
    """Close invitations past their expiry (hourly, from beat)."""
    return invitations_expire(
        as_of=timezone.now(), actor=SystemActor("task:tenancy.invitations_expire")
    )
