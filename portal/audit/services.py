"""The one write path into the audit log."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.db import connection, models, transaction
from django.utils import timezone

from portal.audit.actors import Actor
from portal.audit.chain import (
    ANCHOR_LOCK_KEY,
    CHAIN_LOCK_NAMESPACE,
    GENESIS_HASH,
    anchor_hash,
    audit_key,
    chain_for,
    chain_lock_key,
    data_json,
    entry_hash,
)
from portal.audit.events import AuditEvent
from portal.audit.models import AuditCheckpoint, AuditLogEntry
from portal.audit.selectors import ChainHead, audit_chain_heads, audit_last_anchor

if TYPE_CHECKING:
    from portal.tenancy.models import Account, Organisation

# Entries are chained per tenant root (see portal.audit.chain), in id order within a chain:
# appends to one chain are serialised by that chain's transaction-scoped advisory lock, taken
# as late as possible (call audit_record at the end of the service) and held to the commit.
# Tenants with different roots never wait for each other.


class AuditOutsideTransaction(RuntimeError):
    """audit_record was called outside the transaction of the change it describes."""


def audit_record(
    *,
    actor: Actor,
    event: AuditEvent,
    account: Account | None = None,
    organisation: Organisation | None = None,
    target: models.Model | None = None,
    data: dict[str, Any] | None = None,
) -> AuditLogEntry:
    """Append one entry for `event`, inside the caller's transaction.

    If the caller's transaction rolls back, so does the entry: a change and its audit entry
    exist together or not at all.

    :raises AuditOutsideTransaction: when called outside `transaction.atomic`.
    """
    if not connection.in_atomic_block:
        raise AuditOutsideTransaction("audit_record must run inside the service's transaction")
    if organisation is None and account is not None:
        organisation_id = account.organisation_id
    else:
        organisation_id = organisation.pk if organisation is not None else None
    target_type = target._meta.label_lower if target is not None else ""
    target_id = str(target.pk) if target is not None else ""
    user_id = actor.user_id
    account_id = account.pk if account is not None else None
    with connection.cursor() as cursor:
        # Hash what PostgreSQL will give back: jsonb rewrites numbers, inet rewrites addresses.
        # The tenant root is read in the same round trip: the first id of the tree path.
        cursor.execute(
            "SELECT %s::jsonb::text, host(%s::inet), "
            "(SELECT split_part(path, '/', 2)::bigint FROM tenancy_organisation WHERE id = %s)",
            [data_json(data), actor.context.ip, organisation_id],
        )
        data_text, ip, root_id = cursor.fetchone()
        clean_data = json.loads(data_text)
        chain = chain_for(root_organisation_id=root_id, account_id=account_id)
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [CHAIN_LOCK_NAMESPACE, chain_lock_key(chain)]
        )
        cursor.execute(
            "SELECT hash FROM audit_auditlogentry WHERE chain = %s ORDER BY id DESC LIMIT 1",
            [chain],
        )
        row = cursor.fetchone()
        # Drawn under the chain's lock, so that id order within a chain is chain order.
        cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_auditlogentry', 'id'))")
        (entry_id,) = cursor.fetchone()
    prev_hash = row[0] if row else GENESIS_HASH
    created_at = timezone.now()
    request_id = actor.context.request_id
    entry = AuditLogEntry(
        id=entry_id,
        created_at=created_at,
        chain=chain,
        event_type=int(event),
        account_id=account_id,
        organisation_id=organisation_id,
        actor_id=user_id,
        actor_label=actor.label[:254],
        target_type=target_type,
        target_id=target_id,
        data=clean_data,
        ip_address=ip,
        request_id=request_id,
        prev_hash=prev_hash,
    )
    entry.hash = entry_hash(
        entry_id=entry_id,
        prev_hash=prev_hash,
        created_at=created_at,
        event_type=int(event),
        account_id=entry.account_id,
        organisation_id=organisation_id,
        actor_id=user_id,
        actor_label=entry.actor_label,
        target_type=target_type,
        target_id=target_id,
        data=clean_data,
        ip_address=ip,
        request_id=request_id,
        key=audit_key(),
        chain=chain,
    )
    entry.save(force_insert=True)
    return entry


@transaction.atomic
def audit_anchor_record(
    *,
    heads: dict[str, ChainHead] | None = None,
    entries_verified: int | None = None,
    only_if_moved: bool = False,
) -> AuditCheckpoint | None:
    """Append an anchor holding every chain's head (see AuditCheckpoint).

    `heads` are those a verification just walked (with `entries_verified`); without them the
    current heads are read. With `only_if_moved`, nothing is written while every head is where
    the last anchor saw it. Returns the anchor, or None when nothing was written (no entries,
    or no head moved).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [CHAIN_LOCK_NAMESPACE, ANCHOR_LOCK_KEY]
        )
    if heads is None:
        heads = audit_chain_heads()
    if not heads:
        return None
    stored = {chain: [head.id, head.hash] for chain, head in sorted(heads.items())}
    last = audit_last_anchor()
    if only_if_moved and last is not None and last.heads == stored:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_auditcheckpoint', 'id'))")
        (anchor_id,) = cursor.fetchone()
    newest = max(heads.values(), key=lambda head: head.id)
    prev_hash = last.hash if last is not None else GENESIS_HASH
    created_at = timezone.now()
    return AuditCheckpoint.objects.create(
        id=anchor_id,
        created_at=created_at,
        entry_id=newest.id,
        entry_hash=newest.hash,
        entries_verified=entries_verified,
        heads=stored,
        prev_hash=prev_hash,
        hash=anchor_hash(
            anchor_id=anchor_id,
            prev_hash=prev_hash,
            created_at=created_at,
            heads=stored,
            key=audit_key(),
        ),
    )
