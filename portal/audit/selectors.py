"""Reads of the audit log: tenant-filtered listings, chain heads and chain verification."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import QuerySet

from portal.audit.chain import GENESIS_HASH, GLOBAL_CHAIN, anchor_hash, audit_key, entry_hash
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


class ChainHead(NamedTuple):
    """The newest entry of a chain."""

    id: int
    hash: str


@dataclass(frozen=True)
class ChainReport:
    """The outcome of verifying every chain and anchor: OK, or the first break and why.

    A broken entry is named by `broken_id` and `broken_chain`; a broken anchor (edited, or one
    missing between two others) by `broken_anchor_id`.
    """

    ok: bool
    entries: int
    heads: dict[str, ChainHead] = field(default_factory=dict)
    broken_id: int | None = None
    broken_chain: str = ""
    broken_anchor_id: int | None = None
    reason: str = ""

    @property
    def chains(self) -> int:
        return len(self.heads)


class _Row(NamedTuple):
    id: int
    chain: str
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


# Each chain's newest row, one index probe per chain (a loose index scan over (chain, id)),
# however long the chains are.
_HEADS_SQL = """
WITH RECURSIVE chains(chain) AS (
    (SELECT chain FROM audit_auditlogentry ORDER BY chain LIMIT 1)
    UNION ALL
    SELECT (SELECT e.chain FROM audit_auditlogentry e WHERE e.chain > c.chain
            ORDER BY e.chain LIMIT 1)
    FROM chains c WHERE c.chain IS NOT NULL
)
SELECT c.chain, head.id, head.hash
FROM chains c
CROSS JOIN LATERAL (
    SELECT e.id, e.hash FROM audit_auditlogentry e WHERE e.chain = c.chain
    ORDER BY e.id DESC LIMIT 1
) head
WHERE c.chain IS NOT NULL
"""


def audit_chain_heads() -> dict[str, ChainHead]:
    """Return every chain's newest committed entry."""
    with connection.cursor() as cursor:
        cursor.execute(_HEADS_SQL)
        return {chain: ChainHead(entry_id, hash_) for chain, entry_id, hash_ in cursor.fetchall()}


def audit_last_anchor() -> AuditCheckpoint | None:
    """Return the newest anchor (legacy single-chain checkpoints are not anchors)."""
    return AuditCheckpoint.objects.exclude(hash="").order_by("-id").first()


@dataclass
class _Anchored:
    """The newest head of each chain that any anchor recorded, and which anchor did."""

    heads: dict[str, tuple[int, str, int]] = field(default_factory=dict)

    def add(self, chain: str, entry_id: int, entry_hash_value: str, anchor_id: int) -> None:
        known = self.heads.get(chain)
        if known is None or entry_id > known[0]:
            self.heads[chain] = (entry_id, entry_hash_value, anchor_id)


def _anchors_verify(key: bytes) -> tuple[_Anchored, ChainReport | None]:
    """Check every anchor's own hash and link; collect the newest anchored head per chain.

    Only the newest anchored head of a chain needs comparing with the chain: if it is intact,
    the chain's links vouch for everything before it, older anchored heads included.
    """
    anchored = _Anchored()
    prev = GENESIS_HASH
    rows = AuditCheckpoint.objects.order_by("id").values_list(
        "id", "created_at", "entry_id", "entry_hash", "heads", "prev_hash", "hash"
    )
    for anchor_id, created_at, entry_id, entry_hash_value, heads, prev_hash, hash_ in rows:
        if not hash_:
            # A checkpoint from before there were several chains: the one chain's head.
            anchored.add(GLOBAL_CHAIN, entry_id, entry_hash_value, anchor_id)
            continue
        if prev_hash != prev:
            return anchored, ChainReport(
                ok=False,
                entries=0,
                broken_anchor_id=anchor_id,
                reason="its previous-anchor link does not match the anchor before it "
                "(an anchor was deleted, inserted or reordered)",
            )
        computed = anchor_hash(
            anchor_id=anchor_id, prev_hash=prev_hash, created_at=created_at, heads=heads, key=key
        )
        if computed != hash_:
            return anchored, ChainReport(
                ok=False,
                entries=0,
                broken_anchor_id=anchor_id,
                reason="its content does not match its hash (the anchor was edited)",
            )
        for chain, (head_id, head_hash) in heads.items():
            anchored.add(chain, head_id, head_hash, anchor_id)
        prev = hash_
    return anchored, None


def audit_chain_verify(*, chunk_size: int = 5000) -> ChainReport:
    """Walk the whole log in id order and report the first row whose chain link or hash fails.

    Each row is checked against the row before it in its own chain. A row whose content was
    edited fails its own hash; a deleted or reordered row breaks the `prev_hash` link of the
    next row of its chain; rows cut off the end of a chain are caught by the anchors, which
    are checked first (their own hashes and links) and then against the chains.
    """
    key = audit_key()
    anchored, broken_anchor = _anchors_verify(key)
    if broken_anchor is not None:
        return broken_anchor
    # The anchored rows, looked for during the walk: at most one per chain.
    wanted = {head_id: chain for chain, (head_id, _h, _a) in anchored.heads.items()}
    found: dict[int, tuple[str, str]] = {}
    heads: dict[str, ChainHead] = {}
    count = 0
    for row in _rows(chunk_size):
        head = heads.get(row.chain)
        prev = head.hash if head is not None else GENESIS_HASH
        if row.prev_hash != prev:
            return ChainReport(
                ok=False,
                entries=count,
                broken_id=row.id,
                broken_chain=row.chain,
                reason="its previous-hash link does not match the row before it in its chain "
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
            chain=row.chain,
        )
        if computed != row.hash:
            return ChainReport(
                ok=False,
                entries=count,
                broken_id=row.id,
                broken_chain=row.chain,
                reason="its content does not match its hash (the row was edited)",
            )
        if row.id in wanted:
            found[row.id] = (row.chain, row.hash)
        heads[row.chain] = ChainHead(row.id, row.hash)
        count += 1
    for chain, (head_id, head_hash, anchor_id) in sorted(anchored.heads.items()):
        if found.get(head_id) != (chain, head_hash):
            return ChainReport(
                ok=False,
                entries=count,
                broken_id=head_id,
                broken_chain=chain,
                reason=f"the head of this chain recorded by anchor {anchor_id} is missing or "
                "changed (rows were removed from the end of the chain)",
            )
    return ChainReport(ok=True, entries=count, heads=heads)
