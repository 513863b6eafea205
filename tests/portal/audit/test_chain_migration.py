"""A log written under the old single-chain scheme verifies after migration 0003 and carries on.

The entries here are written as the old audit_record wrote them (one global advisory lock, each
row chained to the row before it by id, the hash payload without a chain name), with the
database migrated back to 0002; then the database is migrated forward again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from portal.audit.actors import SystemActor
from portal.audit.chain import audit_key
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.audit.selectors import audit_chain_verify
from portal.audit.services import audit_record
from portal.tenancy.models import Organisation
from tests.factories import make_organisation

BEFORE = ("audit", "0002_append_only_triggers")


def _old_scheme_hash(values: dict[str, object]) -> str:
    """The hash of migration 0002's days, spelled out here so that it cannot drift."""
    at = values["created_at"]
    assert isinstance(at, dt.datetime)
    payload = {
        "id": values["id"],
        "prev": values["prev_hash"],
        "at": at.astimezone(dt.UTC).isoformat(),
        "event": values["event_type"],
        "account": values["account_id"],
        "organisation": values["organisation_id"],
        "actor": None,
        "actor_label": values["actor_label"],
        "target": ["", ""],
        "data": values["data"],
        "ip": None,
        "request_id": None,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(audit_key(), canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def _old_scheme_append(*, event: int, organisation_id: int | None, note: str) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x5A4D_A0D1])
        cursor.execute("SELECT hash FROM audit_auditlogentry ORDER BY id DESC LIMIT 1")
        row = cursor.fetchone()
        cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_auditlogentry', 'id'))")
        (entry_id,) = cursor.fetchone()
        prev_hash: str = row[0] if row else "0" * 64
        created_at = dt.datetime.now(dt.UTC)
        data = {"name": note}
        values: dict[str, object] = {
            "id": entry_id,
            "prev_hash": prev_hash,
            "created_at": created_at,
            "event_type": event,
            "account_id": None,
            "organisation_id": organisation_id,
            "actor_label": "old-scheme",
            "data": data,
        }
        cursor.execute(
            "INSERT INTO audit_auditlogentry (id, created_at, event_type, account_id, "
            "organisation_id, actor_id, actor_label, target_type, target_id, data, ip_address, "
            "request_id, prev_hash, hash) VALUES (%s, %s, %s, NULL, %s, NULL, %s, '', '', "
            "%s::jsonb, NULL, NULL, %s, %s)",
            [
                entry_id,
                created_at,
                event,
                organisation_id,
                "old-scheme",
                json.dumps(data),
                prev_hash,
                _old_scheme_hash(values),
            ],
        )
        return int(entry_id)


def _old_scheme_checkpoint(entry_id: int, entries: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditcheckpoint (created_at, entry_id, entry_hash, "
            "entries_verified) SELECT now(), id, hash, %s FROM audit_auditlogentry WHERE id = %s",
            [entries, entry_id],
        )


@pytest.fixture
def old_log(transactional_db: None) -> list[int]:
    """Entries and a checkpoint written before migration 0003, then migrated forward."""
    # Not through the service: its audit entry would be a new-scheme one.
    group = Organisation.objects.create(name="Made before chains", path="/0/")
    Organisation.objects.filter(pk=group.pk).update(path=f"/{group.pk}/")
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([BEFORE])
    try:
        ids = [
            _old_scheme_append(
                event=int(AuditEvent.ORGANISATION_UPDATED),
                organisation_id=group.pk if index % 2 else None,
                note=f"old {index}",
            )
            for index in range(6)
        ]
        _old_scheme_checkpoint(ids[3], 4)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    return ids


def test_old_entries_form_the_global_chain_and_verify(old_log: list[int]) -> None:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert out.getvalue().startswith("OK")
    old = AuditLogEntry.objects.filter(id__in=old_log)
    assert set(old.values_list("chain", flat=True)) == {"global"}


def test_new_entries_carry_on_after_the_old_ones(old_log: list[int]) -> None:
    group = make_organisation("Made after chains")
    with transaction.atomic():
        global_entry = audit_record(actor=SystemActor("test:new"), event=AuditEvent.LOGOUT)
        tenant_entry = audit_record(
            actor=SystemActor("test:new"),
            event=AuditEvent.ORGANISATION_UPDATED,
            organisation=group,
            data={"name": "new"},
        )
    # The global chain goes on from the last entry of the old scheme.
    assert global_entry.prev_hash == AuditLogEntry.objects.get(id=old_log[-1]).hash
    assert tenant_entry.chain == f"org:{group.pk}"
    report = audit_chain_verify()
    assert report.ok, report
    call_command("audit_verify", "--checkpoint", stdout=StringIO())
    assert audit_chain_verify().ok


def test_an_old_checkpoint_still_catches_a_cut_tail(old_log: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM audit_auditlogentry WHERE id >= %s", [old_log[3]])
        cursor.execute("SET session_replication_role = DEFAULT")
    with pytest.raises(CommandError, match=f"BROKEN at row {old_log[3]} of chain global"):
        call_command("audit_verify", stdout=StringIO())
