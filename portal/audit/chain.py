"""The hash chains: which chain an entry joins, and how its hash is computed from its content
and the hash of its predecessor in that chain.

There is one chain per tenant root, so that tenants append in parallel (each chain has its own
advisory lock): `org:<id>` for everything under a top-level organisation (its subsidiaries and
their accounts included), `homes:<n>` for households (accounts without an organisation), spread
over HOUSEHOLD_CHAINS chains by account id so that the set of chains stays small however many
households there are, and `global` for entries without a tenant (sign-ins, staff and system
actions). Entries written before chains existed form the start of the `global` chain.
Anchors (AuditCheckpoint rows) hash every chain's head, so that cutting the tail off one chain
is noticed too.

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
import zlib
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.crypto import salted_hmac

GENESIS_HASH = "0" * 64
GLOBAL_CHAIN = "global"
HOUSEHOLD_CHAINS = 64
# pg_advisory_xact_lock(namespace, key): the chain locks' namespace; the key is chain_lock_key().
CHAIN_LOCK_NAMESPACE = 0x5A4D_A0D1
# Anchors are chained too; their appends take this key in the same namespace.
ANCHOR_LOCK_KEY = 0


def chain_for(*, root_organisation_id: int | None, account_id: int | None) -> str:
    """Return the chain of an entry whose tenant root is this organisation (or household)."""
    if root_organisation_id is not None:
        return f"org:{root_organisation_id}"
    if account_id is not None:
        return f"homes:{account_id % HOUSEHOLD_CHAINS}"
    return GLOBAL_CHAIN


def chain_lock_key(chain: str) -> int:
    """Return the advisory lock key of a chain: a signed 32-bit hash of its name, never 0.

    Two chains that share a key only wait for each other; the chains themselves stay correct.
    """
    key = zlib.crc32(chain.encode("utf-8")) - 2**31
    return key or 1


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
    chain: str = GLOBAL_CHAIN,
) -> str:
    """Return the HMAC-SHA256 hex digest that chains this entry to `prev_hash`.

    The chain's name is hashed too, except for the global chain: entries written before
    chains existed (all of them global) keep verifying as they were written.
    """
    payload: dict[str, Any] = {
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
    if chain != GLOBAL_CHAIN:
        payload["chain"] = chain
    return _hmac(payload, key)


def anchor_hash(
    *,
    anchor_id: int,
    prev_hash: str,
    created_at: dt.datetime,
    heads: dict[str, list[Any]],
    key: bytes,
) -> str:
    """Return the HMAC-SHA256 hex digest of an anchor: every chain's head ([id, hash]) at
    `created_at`, chained to the previous anchor's hash."""
    payload = {
        "anchor": anchor_id,
        "prev": prev_hash,
        "at": created_at.astimezone(dt.UTC).isoformat(),
        "heads": heads,
    }
    return _hmac(payload, key)


def _hmac(payload: dict[str, Any], key: bytes) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()
