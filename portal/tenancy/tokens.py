"""Invitation link tokens: an HMAC of the invitation, never stored (see models.Invitation)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

_SALT = "portal.tenancy.invitation"


def _mac(public_id: uuid.UUID, nonce: str, secret: str | None = None) -> str:
    return salted_hmac(_SALT, f"{public_id}:{nonce}", secret=secret, algorithm="sha256").hexdigest()


def invitation_token(*, public_id: uuid.UUID, nonce: str) -> str:
    """Return the token for the emailed link."""
    return f"{public_id.hex}-{_mac(public_id, nonce)}"


def parse_invitation_token(token: str) -> tuple[uuid.UUID, str] | None:
    """Split a token into (invitation public id, mac); None if it is malformed."""
    head, sep, mac = token.partition("-")
    if not sep or len(mac) != 64:
        return None
    try:
        return uuid.UUID(hex=head), mac
    except ValueError:
        return None


def invitation_mac_matches(*, public_id: uuid.UUID, nonce: str, mac: str) -> bool:
    """Compare in constant time, accepting tokens made under a rotated-out secret key."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return any(constant_time_compare(_mac(public_id, nonce, secret), mac) for secret in secrets)
