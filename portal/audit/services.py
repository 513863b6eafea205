"""The one write path into the audit log."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.db import connection, models, transaction
from django.utils import timezone

from portal.audit.actors import Actor
from portal.audit.chain import GENESIS_HASH, audit_key, data_json, entry_hash
from portal.audit.events import AuditEvent
from portal.audit.models import AuditCheckpoint, AuditLogEntry

if TYPE_CHECKING:
    from portal.tenancy.models import Account, Organisation

# Entries are chained in id order, so appends are serialised with one transaction-scoped
# advisory lock, taken as late as possible: call audit_record at the end of the service.
_CHAIN_LOCK_KEY = 0x5A4D_A0D1


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
    with connection.cursor() as cursor:
        # Hash what PostgreSQL will give back: jsonb rewrites numbers, inet rewrites addresses.
        cursor.execute(
            "SELECT %s::jsonb::text, host(%s::inet)", [data_json(data), actor.context.ip]
        )
        data_text, ip = cursor.fetchone()
        clean_data = json.loads(data_text)
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
        cursor.execute(
            "SELECT hash FROM audit_auditlogentry ORDER BY id DESC LIMIT 1",
        )
        row = cursor.fetchone()
        cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_auditlogentry', 'id'))")
        (entry_id,) = cursor.fetchone()
    prev_hash = row[0] if row else GENESIS_HASH
    created_at = timezone.now()
    request_id = actor.context.request_id
    entry = AuditLogEntry(
        id=entry_id,
        created_at=created_at,
        event_type=int(event),
        account_id=account.pk if account is not None else None,
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
    )
    entry.save(force_insert=True)
    return entry


@transaction.atomic
def audit_checkpoint_record(*, entry_id: int, entry_hash_value: str, entries: int) -> None:
    """Remember a verified chain head (see AuditCheckpoint)."""
    AuditCheckpoint.objects.create(
        created_at=timezone.now(),
        entry_id=entry_id,
        entry_hash=entry_hash_value,
        entries_verified=entries,
    )
