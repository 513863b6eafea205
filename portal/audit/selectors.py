"""Reads of the audit log: tenant-filtered listings and chain verification."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db.models import QuerySet

from portal.audit.chain import GENESIS_HASH, audit_key, entry_hash
from portal.audit.models import AuditCheckpoint, AuditLogEntry


def audit_entries_for_account(
    *, account_id: int, since: dt.datetime | None = None, event_types: list[int] | None = None
) -> QuerySet[AuditLogEntry]:
    """Return the account's entries, newest first."""
    qs = AuditLogEntry.objects.for_account(account_id)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if event_types:
        qs = qs.of_types(event_types)
    return qs.order_by("-created_at", "-id")


def audit_entries_for_organisations(
    *,
    organisation_ids: list[int],
    since: dt.datetime | None = None,
    event_types: list[int] | None = None,
) -> QuerySet[AuditLogEntry]:
    """Return the entries of these organisations and of the accounts beneath them, newest first."""
    qs = AuditLogEntry.objects.for_organisations(organisation_ids)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if event_types:
        qs = qs.of_types(event_types)
    return qs.order_by("-created_at", "-id")


@dataclass(frozen=True)
class ChainReport:
    """The outcome of verifying the chain: OK, or the first row that breaks it and why."""

    ok: bool
    entries: int
    head_id: int | None = None
    head_hash: str | None = None
    broken_id: int | None = None
    reason: str = ""


class _Row(NamedTuple):
    id: int
    prev_hash: str
    hash: str
    created_at: dt.datetime
    event_type: int
    account_id: int | None
    organisation_id: int | None
    actor_id: int | None
    actor_label: str
    target_type: str
    target_id: str
    data: dict[str, Any]
    ip_address: str | None
    request_id: uuid.UUID | None


def _rows(chunk_size: int) -> Iterator[_Row]:
    values = (
        AuditLogEntry.objects.order_by("id")
        .values_list(*_Row._fields)
        .iterator(chunk_size=chunk_size)
    )
    for value in values:
        yield _Row(*value)


def audit_chain_verify(*, chunk_size: int = 5000) -> ChainReport:
    """Walk the whole log in id order and report the first row whose chain link or hash fails.

    A row whose content was edited fails its own hash; a deleted or reordered row breaks the
    `prev_hash` link of the row after it; rows cut off the end are caught by the checkpoints.
    """
    prev = GENESIS_HASH
    count = 0
    last_id: int | None = None
    seen_hashes: dict[int, str] = {}
    checkpoints = dict(AuditCheckpoint.objects.values_list("entry_id", "entry_hash"))
    key = audit_key()
    for row in _rows(chunk_size):
        if row.prev_hash != prev:
            return ChainReport(
                ok=False,
                entries=count,
                broken_id=row.id,
                reason="its previous-hash link does not match the row before it "
                "(a row before it was deleted, inserted or reordered)",
            )
        computed = entry_hash(
            entry_id=row.id,
            prev_hash=row.prev_hash,
            created_at=row.created_at,
            event_type=row.event_type,
            account_id=row.account_id,
            organisation_id=row.organisation_id,
            actor_id=row.actor_id,
            actor_label=row.actor_label,
            target_type=row.target_type,
            target_id=row.target_id,
            data=row.data,
            ip_address=row.ip_address,
            request_id=row.request_id,
            key=key,
        )
        if computed != row.hash:
            return ChainReport(
                ok=False,
                entries=count,
                broken_id=row.id,
                reason="its content does not match its hash (the row was edited)",
            )
        if row.id in checkpoints:
            seen_hashes[row.id] = row.hash
        prev = row.hash
        last_id = row.id
        count += 1
    for checkpoint_id, checkpoint_hash in sorted(checkpoints.items()):
        if seen_hashes.get(checkpoint_id) != checkpoint_hash:
            return ChainReport(
                ok=False,
                entries=count,
                broken_id=checkpoint_id,
                reason="a verified row recorded in a checkpoint is missing or changed "
                "(rows were removed from the end of the log)",
            )
    return ChainReport(ok=True, entries=count, head_id=last_id, head_hash=prev if count else None)
