"""The audit log is append-only and hash-chained; audit_verify names the first broken row."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from io import StringIO

import pgtrigger
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from portal.audit.actors import RequestContext, SystemActor
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.audit.selectors import audit_chain_verify
from portal.audit.services import AuditOutsideTransaction, audit_record
from portal.audit.tasks import audit_chain_verify_task
from tests.factories import make_organisation

ACTOR = SystemActor("test:chain")


def _append(count: int) -> list[int]:
    ids = []
    for index in range(count):
        with transaction.atomic():
            ids.append(
                audit_record(
                    actor=ACTOR, event=AuditEvent.LOGIN_FAILED, data={"identifier": f"x{index}"}
                ).pk
            )
    return ids


@pytest.fixture
def entries(db: None) -> list[int]:
    return _append(6)


@pytest.fixture
def superuser_session(entries: list[int]) -> Iterator[None]:
    """Let this connection bypass triggers, as a database superuser tampering would."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = DEFAULT")


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def test_a_clean_chain_verifies(entries: list[int]) -> None:
    assert _verify().startswith("OK")
    report = audit_chain_verify()
    assert report.ok and report.entries == len(entries)
    assert report.heads["global"].id == entries[-1]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditlogentry SET actor_label = 'someone else'",
        "DELETE FROM audit_auditlogentry",
        "UPDATE audit_auditcheckpoint SET entry_hash = 'x'",
    ],
)
def test_the_app_role_cannot_update_or_delete(entries: list[int], statement: str) -> None:
    call_command("audit_verify", "--checkpoint", stdout=StringIO())
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)


def test_the_app_role_cannot_truncate(transactional_db: None) -> None:
    _append(2)
    with connection.cursor() as cursor:
        cursor.execute("SET portal.audit_truncate_allowed = 'off'")
    try:
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("TRUNCATE audit_auditlogentry")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET portal.audit_truncate_allowed = 'on'")


def test_audit_verify_names_an_edited_row(entries: list[int], superuser_session: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE audit_auditlogentry SET data = \'{"identifier": "forged"}\' WHERE id = %s',
            [entries[3]],
        )
    with pytest.raises(CommandError, match=f"BROKEN at row {entries[3]} of chain global: its con"):
        _verify()


def test_audit_verify_names_the_row_after_a_deleted_one(
    entries: list[int], superuser_session: None
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditlogentry WHERE id = %s", [entries[2]])
    with pytest.raises(CommandError, match=f"BROKEN at row {entries[3]} of chain global: its prev"):
        _verify()


def test_audit_verify_names_a_reordered_row(entries: list[int], superuser_session: None) -> None:
    # Swap the ids of two rows: their contents are intact but the order is not.
    a, b = entries[1], entries[4]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlogentry SET id = -1 WHERE id = %s", [a])
        cursor.execute("UPDATE audit_auditlogentry SET id = %s WHERE id = %s", [a, b])
        cursor.execute("UPDATE audit_auditlogentry SET id = %s WHERE id = -1", [b])
    with pytest.raises(CommandError, match=f"BROKEN at row {a} of chain global:"):
        _verify()


def test_a_checkpoint_catches_rows_cut_off_the_end(entries: list[int]) -> None:
    out = StringIO()
    call_command("audit_verify", "--checkpoint", stdout=out)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM audit_auditlogentry WHERE id = %s", [entries[-1]])
        cursor.execute("SET session_replication_role = DEFAULT")
    assert audit_chain_verify().ok is False
    with pytest.raises(CommandError, match=f"BROKEN at row {entries[-1]} of chain global: the"):
        _verify()


def test_the_nightly_task_verifies_and_checkpoints(entries: list[int]) -> None:
    assert audit_chain_verify_task() is True
    from portal.audit.models import AuditCheckpoint

    checkpoint = AuditCheckpoint.objects.get()
    assert checkpoint.entry_id == entries[-1]


def test_audit_record_refuses_to_write_outside_a_transaction(
    transactional_db: None,
) -> None:
    with pytest.raises(AuditOutsideTransaction):
        audit_record(actor=ACTOR, event=AuditEvent.LOGOUT)


def test_an_entry_rolls_back_with_its_change(db: None) -> None:
    before = AuditLogEntry.objects.count()

    def doomed_change() -> None:
        with transaction.atomic():
            make_organisation("Doomed")
            raise RuntimeError("the change fails after its audit entry was written")

    with pytest.raises(RuntimeError):
        doomed_change()
    assert AuditLogEntry.objects.count() == before


def test_entries_keep_who_where_and_request(db: None) -> None:
    import uuid

    request_id = uuid.uuid4()
    actor = SystemActor("task:x", context=RequestContext(ip="192.0.2.7", request_id=request_id))
    with transaction.atomic():
        entry = audit_record(actor=actor, event=AuditEvent.LOGOUT, data={"nul": "a\x00b"})
    entry.refresh_from_db()
    assert (entry.actor_label, entry.ip_address, entry.request_id) == (
        "task:x",
        "192.0.2.7",
        request_id,
    )
    assert entry.data == {"nul": "a\ufffdb"}
    assert audit_chain_verify().ok


def test_concurrent_appends_keep_one_unbroken_chain(transactional_db: None) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            _append(15)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = audit_chain_verify()
    assert report.ok, report
    assert report.entries == 90


def test_a_non_superuser_app_role_can_neither_change_rows_nor_switch_the_trigger_off(
    entries: list[int],
) -> None:
    # Production runs the app as an ordinary role: even with table privileges it cannot
    # rewrite history, and only a superuser could disable the trigger.
    role = f"smp_app_probe_{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")  # rolled back with the test
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON audit_auditlogentry TO {role}")
    for statement, error in (
        ("UPDATE audit_auditlogentry SET actor_label = 'x'", "append-only"),
        ("DELETE FROM audit_auditlogentry", "append-only"),
        ("SET LOCAL session_replication_role = replica", "permission denied"),
    ):
        with (
            pytest.raises(DatabaseError, match=error),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SET LOCAL ROLE {role}; {statement}")


def test_a_role_prepared_by_db_grant_app_role_appends_but_cannot_rewrite(
    entries: list[int],
) -> None:
    role = f"smp_app_{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")  # rolled back with the test
    out = StringIO()
    call_command("db_grant_app_role", role, stdout=out)
    assert "audit_auditcheckpoint, audit_auditlogentry" in out.getvalue()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        audit_record(actor=ACTOR, event=AuditEvent.LOGOUT)  # appending works
        cursor.execute("SET LOCAL ROLE NONE")
    for statement, error in (
        ("UPDATE audit_auditlogentry SET actor_label = 'x'", "permission denied"),
        ("TRUNCATE audit_auditlogentry", "permission denied"),
        ("ALTER TABLE audit_auditlogentry DISABLE TRIGGER USER", "must be owner"),
    ):
        with (
            pytest.raises(DatabaseError, match=error),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SET LOCAL ROLE {role}; {statement}")
    assert audit_chain_verify().ok


def test_pgtriggers_ignore_setting_does_not_let_the_app_role_rewrite(entries: list[int]) -> None:
    # Any role may set pgtrigger.ignore, which switches django-pgtrigger's triggers off for
    # its session; what still refuses the app's role is db_grant_app_role's REVOKE.
    role = f"smp_app_ignore_{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")  # rolled back with the test
    call_command("db_grant_app_role", role, stdout=StringIO())
    ((model, trigger),) = pgtrigger.registered("audit.AuditLogEntry:audit_entry_append_only")
    ignore = f"SET LOCAL pgtrigger.ignore = '{{{trigger.get_pgid(model)}}}'"
    for statement in (
        "UPDATE audit_auditlogentry SET actor_label = 'x'",
        "DELETE FROM audit_auditlogentry",
    ):
        with (
            pytest.raises(DatabaseError, match="permission denied"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SET LOCAL ROLE {role}; {ignore}; {statement}")
    assert audit_chain_verify().ok


def test_db_grant_app_role_refuses_an_unknown_role(db: None) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        call_command("db_grant_app_role", "no_such_role_here", stdout=StringIO())


@pytest.mark.parametrize("ip", ["::ffff:1.2.3.4", "2001:DB8:0:0:0:0:0:1", "1.2.3.4", None])
def test_values_that_postgresql_rewrites_still_verify(db: None, ip: str | None) -> None:
    import datetime as dt
    from decimal import Decimal

    actor = SystemActor("task:x", context=RequestContext(ip=ip))
    data = {
        "big": 1e16,
        "negative_zero": -0.0,
        "amount": Decimal("1.10"),
        "at": dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC),
        "text": "é 電表",
    }
    with transaction.atomic():
        audit_record(actor=actor, event=AuditEvent.LOGOUT, data=data)
    assert audit_chain_verify().ok


def test_numbers_json_cannot_hold_are_refused_before_anything_is_written(db: None) -> None:
    before = AuditLogEntry.objects.count()
    with pytest.raises(ValueError, match="JSON"), transaction.atomic():
        audit_record(actor=ACTOR, event=AuditEvent.LOGOUT, data={"x": float("nan")})
    assert AuditLogEntry.objects.count() == before


def test_the_chain_is_keyed_so_a_rewritten_log_cannot_be_rehashed(entries: list[int]) -> None:
    from django.test import override_settings

    assert audit_chain_verify().ok
    with override_settings(PORTAL_AUDIT_KEY="a-different-key"):
        report = audit_chain_verify()
    assert not report.ok and report.broken_id == entries[0]
