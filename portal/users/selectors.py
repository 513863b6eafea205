"""Reads about users."""

from __future__ import annotations

from allauth.mfa.models import Authenticator

from portal.users.models import StaffFactorApproval, User

# The kinds of authenticator that are a second factor on their own (recovery codes come with
# one and are no factor by themselves).
FACTOR_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


def staff_factor_confirmed(*, user: User, besides: Authenticator | None = None) -> bool:
    """True if the user has a second factor (other than `besides`) that is not waiting for its
    emailed confirmation (factors enrolled before confirmations existed count as confirmed)."""
    held = StaffFactorApproval.objects.filter(user=user, confirmed_at__isnull=True).values(
        "authenticator_id"
    )
    found = Authenticator.objects.filter(user=user, type__in=FACTOR_TYPES).exclude(pk__in=held)
    if besides is not None:
        found = found.exclude(pk=besides.pk)
    return bool(found.exists())


def staff_factor_waiting(*, user: User) -> bool:
    """True if a staff factor of the user waits for its emailed confirmation."""
    return StaffFactorApproval.objects.filter(user=user, confirmed_at__isnull=True).exists()
