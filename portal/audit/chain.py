"""The hash chain: how an entry's hash is computed from its content and its predecessor's hash.

The hash is an HMAC-SHA256 under the audit key (PORTAL_AUDIT_KEY), which lives outside the
database: someone who can rewrite the table cannot recompute a valid chain. The canonical form
is JSON with sorted keys and no whitespace. `data` and the client address are hashed exactly as
PostgreSQL gives them back (audit_record round-trips them through jsonb and inet first), so that
verification later sees the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.crypto import salted_hmac

GENESIS_HASH = "0" * 64


def audit_key() -> bytes:
    """Return the key of the chain's HMAC.

    PORTAL_AUDIT_KEY must never change once entries exist; without it a key is derived from
    SECRET_KEY (fine for development; the deploy check portal.W003 asks for a real one).
    """
    configured: str | None = settings.PORTAL_AUDIT_KEY
    if configured:
        return configured.encode("utf-8")
    return salted_hmac("portal.audit.chain", "key", secret=settings.SECRET_KEY).digest()


def data_json(data: dict[str, Any] | None) -> str:
    """Serialise `data` for jsonb.

    :raises ValueError: for NaN or infinite numbers, which JSON cannot represent.
    """
    text = json.dumps(data or {}, cls=DjangoJSONEncoder, ensure_ascii=False, allow_nan=False)
    # jsonb cannot store U+0000; an attacker-chosen login identifier must not break the log.
    return text.replace("\\u0000", "\\ufffd")


def entry_hash(
    *,
    entry_id: int,
    prev_hash: str,
    created_at: dt.datetime,
    event_type: int,
    account_id: int | None,
    organisation_id: int | None,
    actor_id: int | None,
    actor_label: str,
    target_type: str,
    target_id: str,
    data: dict[str, Any],
    ip_address: str | None,
    request_id: uuid.UUID | str | None,
    key: bytes,
) -> str:
    """Return the HMAC-SHA256 hex digest that chains this entry to `prev_hash`."""
    payload = {
        "id": entry_id,
        "prev": prev_hash,
        "at": created_at.astimezone(dt.UTC).isoformat(),
        "event": event_type,
        "account": account_id,
        "organisation": organisation_id,
        "actor": actor_id,
        "actor_label": actor_label,
        "target": [target_type, target_id],
        "data": data,
        "ip": ip_address,
        "request_id": str(request_id) if request_id else None,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()
