"""One hash chain per tenant root, anchors over every chain's head, and parallel appends.

Entries of different tenant roots chain separately and lock separately; audit_verify still
names the chain and row of an edit, a deletion, a reordering or a cut tail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from portal.audit.actors import SystemActor
from portal.audit.chain import GLOBAL_CHAIN, HOUSEHOLD_CHAINS
from portal.audit.events import AuditEvent
from portal.audit.models import AuditCheckpoint, AuditLogEntry
from portal.audit.selectors import audit_chain_heads, audit_chain_verify
from portal.audit.services import audit_anchor_record, audit_record
from portal.audit.tasks import audit_anchor_task
from portal.tenancy.models import Account, Organisation
from tests.factories import make_account, make_organisation

ACTOR = SystemActor("test:chains")


def _write(
    *, account: Account | None = None, organisation: Organisation | None = None, note: str = ""
) -> AuditLogEntry:
    with transaction.atomic():
        return audit_record(
            actor=ACTOR,
            event=AuditEvent.ACCOUNT_UPDATED,
            account=account,
            organisation=organisation,
            data={"number": note, "name": note},
        )


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


@dataclass(frozen=True)
class Tenants:
    group: Organisation
    subsidiary: Organisation
    other: Organisation
    group_account: Account
    household: Account


@pytest.fixture
def tenants(db: None) -> Tenants:
    group = make_organisation("Group")
    subsidiary = make_organisation("Subsidiary", parent=group)
    return Tenants(
        group=group,
        subsidiary=subsidiary,
        other=make_organisation("Other group"),
        group_account=make_account("Under the subsidiary", organisation=subsidiary),
        household=make_account("A household"),
    )


@pytest.fixture
def superuser_session(db: None) -> Iterator[None]:
    """Let this connection bypass triggers, as a database superuser tampering would."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = DEFAULT")


def test_each_tenant_root_has_its_own_chain(tenants: Tenants) -> None:
    entries = [
        _write(organisation=tenants.group, note="g1"),
        _write(account=tenants.group_account, note="a1"),
        _write(organisation=tenants.other, note="o1"),
        _write(organisation=tenants.subsidiary, note="s1"),
        _write(account=tenants.household, note="h1"),
        _write(note="no tenant"),
    ]
    root = f"org:{tenants.group.pk}"
    # A subsidiary and its accounts join the chain of the group at the top of their tree.
    assert [e.chain for e in entries] == [
        root,
        root,
        f"org:{tenants.other.pk}",
        root,
        f"homes:{tenants.household.pk % HOUSEHOLD_CHAINS}",
        GLOBAL_CHAIN,
    ]
    # Each entry links to the previous entry of its own chain, not to the row before it.
    assert entries[1].prev_hash == entries[0].hash
    assert entries[3].prev_hash == entries[1].hash
    report = audit_chain_verify()
    assert report.ok, report
    assert report.heads[root].id == entries[3].pk
    assert audit_chain_heads() == report.heads
    assert _verify() == f"OK {report.entries} rows verified in {report.chains} chains\n"


@pytest.fixture
def interleaved(tenants: Tenants) -> list[AuditLogEntry]:
    """Three chains written in turns: group, other, global, group, other, global, ..."""
    entries = []
    for index in range(4):
        entries.append(_write(organisation=tenants.group, note=f"g{index}"))
        entries.append(_write(organisation=tenants.other, note=f"o{index}"))
        entries.append(_write(note=f"n{index}"))
    return entries


def test_audit_verify_names_the_chain_and_row_of_an_edit(
    interleaved: list[AuditLogEntry], superuser_session: None
) -> None:
    target = interleaved[4]  # the other group's second entry
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE audit_auditlogentry SET data = \'{"number": "forged"}\' WHERE id = %s',
            [target.pk],
        )
    with pytest.raises(
        CommandError, match=f"BROKEN at row {target.pk} of chain {target.chain}: its content"
    ):
        _verify()


def test_audit_verify_names_the_next_row_of_the_chain_after_a_deletion(
    interleaved: list[AuditLogEntry], superuser_session: None
) -> None:
    deleted, next_in_chain = interleaved[3], interleaved[6]  # the group's 2nd and 3rd entries
    assert deleted.chain == next_in_chain.chain
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditlogentry WHERE id = %s", [deleted.pk])
    report = audit_chain_verify()
    assert (report.ok, report.broken_id, report.broken_chain) == (
        False,
        next_in_chain.pk,
        deleted.chain,
    )
    with pytest.raises(CommandError, match=f"BROKEN at row {next_in_chain.pk} of chain"):
        _verify()


def test_audit_verify_names_a_row_reordered_within_its_chain(
    interleaved: list[AuditLogEntry], superuser_session: None
) -> None:
    a, b = interleaved[1].pk, interleaved[7].pk  # the other group's 1st and 3rd entries
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlogentry SET id = -1 WHERE id = %s", [a])
        cursor.execute("UPDATE audit_auditlogentry SET id = %s WHERE id = %s", [a, b])
        cursor.execute("UPDATE audit_auditlogentry SET id = %s WHERE id = -1", [b])
    with pytest.raises(CommandError, match=f"BROKEN at row {a} of chain {interleaved[1].chain}"):
        _verify()


def test_an_entry_moved_to_another_chain_is_named(
    interleaved: list[AuditLogEntry], superuser_session: None
) -> None:
    # The group's newest entry, put in the other group's chain: it does not link there.
    moved = interleaved[9]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditlogentry SET chain = %s WHERE id = %s",
            [interleaved[10].chain, moved.pk],
        )
    report = audit_chain_verify()
    assert (report.ok, report.broken_id, report.broken_chain) == (
        False,
        moved.pk,
        interleaved[10].chain,
    )


def _cut(entry_ids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM audit_auditlogentry WHERE id = ANY(%s)", [entry_ids])
        cursor.execute("SET session_replication_role = DEFAULT")


@pytest.mark.parametrize("anchor_by", ["audit_verify", "beat task"])
def test_an_anchor_catches_a_tail_cut_off_one_chain(
    interleaved: list[AuditLogEntry], anchor_by: str
) -> None:
    if anchor_by == "audit_verify":
        call_command("audit_verify", "--checkpoint", stdout=StringIO())
    else:
        assert audit_anchor_task() is True
    anchor = AuditCheckpoint.objects.get()
    assert set(anchor.heads) == set(audit_chain_verify().heads) >= {e.chain for e in interleaved}
    # The other group's last two entries go; every other chain is untouched, and the chain
    # that is left is itself perfectly linked.
    other_chain = [e for e in interleaved if e.chain == interleaved[1].chain]
    _cut([other_chain[-2].pk, other_chain[-1].pk])
    report = audit_chain_verify()
    assert (report.ok, report.broken_id, report.broken_chain) == (
        False,
        other_chain[-1].pk,
        other_chain[-1].chain,
    )
    with pytest.raises(
        CommandError,
        match=f"BROKEN at row {other_chain[-1].pk} of chain {other_chain[-1].chain}: "
        f"the head of this chain recorded by anchor {anchor.pk}",
    ):
        _verify()


def test_the_anchor_task_writes_only_when_a_head_moved(tenants: Tenants) -> None:
    assert audit_anchor_task() is True  # the fixture's own entries
    assert audit_anchor_task() is False
    _write(organisation=tenants.other)
    assert audit_anchor_task() is True
    first, second = AuditCheckpoint.objects.order_by("id")
    assert second.prev_hash == first.hash
    assert second.heads[f"org:{tenants.other.pk}"] != first.heads[f"org:{tenants.other.pk}"]
    assert second.heads[f"org:{tenants.group.pk}"] == first.heads[f"org:{tenants.group.pk}"]
    assert audit_chain_verify().ok


def test_an_empty_log_is_not_anchored(db: None) -> None:
    assert audit_anchor_task() is False
    assert not AuditCheckpoint.objects.exists()


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("UPDATE audit_auditcheckpoint SET heads = '{}' WHERE id = %s", "the anchor was edited"),
        ("DELETE FROM audit_auditcheckpoint WHERE id = %s", "an anchor was deleted"),
    ],
)
def test_audit_verify_names_an_edited_or_missing_anchor(
    interleaved: list[AuditLogEntry], superuser_session: None, statement: str, reason: str
) -> None:
    anchors = []
    for _ in range(3):
        _write(note="more")
        anchor = audit_anchor_record()
        assert anchor is not None
        anchors.append(anchor)
    with connection.cursor() as cursor:
        cursor.execute(statement, [anchors[1].pk])
    broken = anchors[1].pk if "edited" in reason else anchors[2].pk
    with pytest.raises(CommandError, match=f"BROKEN at anchor {broken}: .*{reason}"):
        _verify()


# --- Parallel appends ----------------------------------------------------------------------


def _waits_for_advisory_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks "
            "WHERE pid = %s AND locktype = 'advisory' AND NOT granted",
            [pid],
        )
        return bool(cursor.fetchone()[0])


class _Writer(threading.Thread):
    """Appends one entry on its own connection; with `hold`, keeps its transaction (and so its
    chain lock) open until `release` is set."""

    def __init__(self, write: Callable[[], object], *, hold: bool = False) -> None:
        super().__init__(daemon=True)
        self.write = write
        self.hold = hold
        self.pid = 0
        self.started_up = threading.Event()
        self.written = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self.started_up.set()
            with transaction.atomic():
                self.write()
                self.written.set()
                if self.hold:
                    self.release.wait(timeout=120)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            self.started_up.set()
            self.written.set()
            connection.close()


def _outcome(second: _Writer) -> str:
    """Wait until the second writer either finished ("done") or is seen waiting on an
    advisory lock ("waits"). Deterministic: no duration decides the outcome; the bound only
    keeps a broken test from hanging."""
    second.started_up.wait(timeout=60)
    for _ in range(6000):
        if not second.is_alive():
            return "done"
        if second.pid and _waits_for_advisory_lock(second.pid):
            return "waits"
        time.sleep(0.01)
    return "neither"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_tenants_hold_their_chain_locks_at_once() -> None:
    group_a, group_b = make_organisation("Tenant A"), make_organisation("Tenant B")
    first = _Writer(lambda: _write(organisation=group_a, note="a"), hold=True)
    first.start()
    assert first.written.wait(timeout=60) and first.error is None
    second = _Writer(lambda: _write(organisation=group_b, note="b"))
    second.start()
    try:
        outcome = _outcome(second)
    finally:
        first.release.set()
        first.join(timeout=60)
        second.join(timeout=60)
    # Tenant B appended while tenant A's transaction still held tenant A's chain lock.
    assert outcome == "done", outcome
    assert second.error is None and first.error is None
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_writers_in_one_tenant_take_turns() -> None:
    group = make_organisation("Tenant A")
    subsidiary = make_organisation("Subsidiary of A", parent=group)
    first = _Writer(lambda: _write(organisation=group, note="first"), hold=True)
    first.start()
    assert first.written.wait(timeout=60) and first.error is None
    second = _Writer(lambda: _write(organisation=subsidiary, note="second"))
    second.start()
    try:
        outcome = _outcome(second)
    finally:
        first.release.set()
        first.join(timeout=60)
        second.join(timeout=60)
    # Same tenant root, same chain: the second waits for the first to commit, then links to it.
    assert outcome == "waits", outcome
    assert second.error is None and first.error is None
    a, b = AuditLogEntry.objects.filter(data__number__in=["first", "second"]).order_by("id")
    assert (a.data["number"], b.data["number"], b.prev_hash) == ("first", "second", a.hash)
    assert audit_chain_verify().ok
