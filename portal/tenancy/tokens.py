"""Invitation link tokens: an HMAC of the invitation, never stored (see models.Invitation)."""

from __future__ import annotations

import hashlib
import secrets
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


# --- API keys ---------------------------------------------------------------------------------

API_KEY_PREFIX = "smk"


def api_key_generate() -> tuple[str, str, str]:
    """Return (key, prefix, sha256 of the key) for a new API key.

    The key carries 256 random bits, so a plain SHA-256 is enough to store it: no slow hash is
    needed against guessing, and checking a key costs one indexed lookup and one hash.
    """
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, api_key_hash(key)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_api_key(key: str) -> str | None:
    """Return the prefix of a well-formed key, or None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12 or len(key) > 128:
        return None
    return parts[1]


def api_key_matches(key: str, hashed: str) -> bool:
    return constant_time_compare(api_key_hash(key), hashed)
