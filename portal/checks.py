"""Deploy checks of our own, run by `manage.py check --deploy`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def shared_cache(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Rate limits and lockouts live in the cache: a per-process cache lets them be dodged."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [
            Warning(
                "The cache is local to each process, so login rate limits and lockouts are not "
                "shared between workers.",
                hint="Set REDIS_URL (or CACHE_REDIS_URL).",
                id="portal.W001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def staff_mfa(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Staff reach every customer's data through the admin: they need a second factor."""
    if not settings.PORTAL_STAFF_REQUIRE_MFA:
        return [
            Warning(
                "Staff can open the admin without two-factor authentication.",
                hint="Leave PORTAL_STAFF_REQUIRE_MFA on outside development.",
                id="portal.W002",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def audit_key(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Without its own key the audit chain breaks the day SECRET_KEY is rotated."""
    if not settings.PORTAL_AUDIT_KEY:
        return [
            Warning(
                "PORTAL_AUDIT_KEY is not set: the audit chain is keyed from SECRET_KEY.",
                hint="Set PORTAL_AUDIT_KEY to a long random value kept in the secret store; "
                "never change it once the log has entries.",
                id="portal.W003",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def sandbox_payments(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """The sandbox provider credits any top-up without money changing hands."""
    if settings.PAYMENT_SANDBOX_ENABLED and settings.PAYMENT_SANDBOX_SECRET:
        return [
            Error(
                "The sandbox payment provider is on: anyone can top up a wallet for free.",
                hint="Unset PAYMENT_SANDBOX_SECRET (and PAYMENT_SANDBOX_ENABLED) outside "
                "development, and configure a real provider.",
                id="portal.E001",
            )
        ]
    return []
