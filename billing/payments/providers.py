"""Find a configured payment provider by name."""

from __future__ import annotations

from django.conf import settings

from billing.payments.base import PaymentProvider, ProviderUnavailable
from billing.payments.sandbox import SandboxProvider


def provider_get(name: str) -> PaymentProvider:
    """Return the provider called `name`.

    :raises ProviderUnavailable: for an unknown name or a provider without its settings.
    """
    secret = settings.PAYMENT_SANDBOX_SECRET
    if name == SandboxProvider.name and settings.PAYMENT_SANDBOX_ENABLED and secret:
        return SandboxProvider(secret=secret)
    raise ProviderUnavailable(f"payment provider {name!r} is not configured")


def provider_default_name() -> str:
    """The provider new top-ups are paid through."""
    return str(settings.PAYMENT_PROVIDER)
