"""The hash chain: how an entry's hash is computed from its content and its predecessor's hash.

The canonical form is JSON with sorted keys and no whitespace. `data` is normalised through
JSON before it is stored, so the value read back from PostgreSQL's jsonb hashes to the same
bytes as the value that was written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

GENESIS_HASH = "0" * 64


def normalise_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """Return `data` as plain JSON values (what jsonb will give back), without NUL characters."""
    text = json.dumps(data or {}, cls=DjangoJSONEncoder, ensure_ascii=False)
    # jsonb cannot store U+0000; an attacker-chosen login identifier must not break the log.
    text = text.replace("\\u0000", "\\ufffd")
    result: dict[str, Any] = json.loads(text)
    return result


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
) -> str:
    """Return the SHA-256 hex digest that chains this entry to `prev_hash`."""
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
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
