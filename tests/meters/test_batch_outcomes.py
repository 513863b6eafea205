"""Every import batch ends, in a documented state: done, done_with_rejections, rejected, failed
(or duplicate), within PORTAL_IMPORT_MAX_ATTEMPTS attempts, whatever goes wrong in it; and
`import_readings --inline` exits with the code that state documents."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from meters.ingest import pipeline
from meters.models import ImportBatch, Meter, Register
from meters.services import imports as import_services
from meters.tasks import import_sweeper_task
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.celery import app
from tests.factories import SYSTEM
from tests.meters.helpers import run_import

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parents[1] / "data"
HEADER = "meter_serial,timestamp,value,unit,kind\n"
FINAL = {
    ImportBatch.Status.DONE,
    ImportBatch.Status.DONE_WITH_REJECTIONS,
    ImportBatch.Status.REJECTED,
    ImportBatch.Status.FAILED,
}


@pytest.fixture(autouse=True)
def _retries_now(settings: Any) -> None:
    settings.PORTAL_IMPORT_MAX_ATTEMPTS = 3
    settings.PORTAL_IMPORT_RETRY_BACKOFF = (0,)


@contextmanager
def _eager() -> Iterator[None]:
    """The sweeper's re-queued tasks run here, in the test's transaction."""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = eager


def _sweep_until_final(*batches: ImportBatch, rounds: int = 10) -> None:
    """What the beat does every 30 s: the sweeper re-queues what needs a worker."""
    with _eager():
        for _ in range(rounds):
            for batch in batches:
                batch.refresh_from_db()
            if all(batch.status in FINAL for batch in batches):
                return
            import_sweeper_task.apply().get()
    raise AssertionError([(b.status, b.attempts, b.error) for b in batches])


def _staging_left() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'meters_stage%%'")
        return [name for (name,) in cursor.fetchall()]


def _create(content: bytes, fmt: str, *, register_meters: bool = True) -> ImportBatch:
    return import_services.batch_create(
        source=ImportBatch.Source.COMMAND,
        fmt=fmt,
        content=io.BytesIO(content),
        actor=SYSTEM,
        original_name=f"test.{fmt}",
        register_meters=register_meters,
        as_of=timezone.now(),
    )


def _command(path: Path, *args: str, mode: str = "--inline") -> tuple[int, dict[str, Any]]:
    """Run import_readings --inline (or --wait); return its exit code and its JSON line."""
    out = io.StringIO()
    try:
        call_command("import_readings", str(path), mode, *args, stdout=out, stderr=out)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("{")]
    return code, json.loads(lines[-1]) if lines else {}


def _consistent(batch: ImportBatch) -> None:
    """The state agrees with the counts."""
    assert batch.status in FINAL, (batch.status, batch.error)
    assert batch.finished_at is not None and batch.stage == ""
    if batch.status == ImportBatch.Status.DONE:
        assert batch.rejected == 0 and not batch.error
    elif batch.status == ImportBatch.Status.DONE_WITH_REJECTIONS:
        assert 0 < batch.rejected < batch.seen
    elif batch.status == ImportBatch.Status.REJECTED:
        assert batch.rejected == batch.seen and batch.inserted == 0 and batch.error
    else:
        assert batch.error


# --- the poison cases -------------------------------------------------------------------------

GOOD_CSV = (
    HEADER
    + "GOOD1,2026-03-01T00:00:00Z,1.0,kWh,electricity\n"
    + "GOOD1,2026-03-01T00:15:00Z,1.5,kWh,electricity\n"
).encode()


def _json_beyond_bigint() -> bytes:
    row = {"meter": "J1", "timestamp": "2026-03-01T00:00:00Z", "value": 1.0, "unit": "kWh"}
    return json.dumps(
        {"readings": [{**row, "kind": "electricity"}, {**row, "duration": 10**25}]}
    ).encode()


def _espi_thirty_digits() -> bytes:
    text = (DATA / "greenbutton" / "electric_containerized.xml").read_text()
    return text.replace("<value>450</value>", "<value>" + "9" * 30 + "</value>", 1).encode()


def _far_future_new_meter() -> bytes:
    return (
        HEADER
        + "F1,2026-03-01T00:00:00Z,1,kWh,electricity\n"
        + "F1,2026-03-01T00:15:00Z,2,kWh,electricity\n"
        + "F1,2026-03-01T00:30:00Z,3,kWh,electricity\n"
        + "F1,2226-03-01T00:30:00Z,4,kWh,electricity\n"
    ).encode()


# Each poison file has good rows too: the values that cannot fit are rejected rows with their
# line (meters.ingest.errors), so the batch ends done_with_rejections with the good rows in.
POISON = [
    pytest.param(_json_beyond_bigint, "json", id="json-integer-beyond-bigint"),
    pytest.param(_espi_thirty_digits, "espi", id="espi-value-of-30-digits"),
    pytest.param(_far_future_new_meter, "csv", id="far-future-reading-on-a-new-meter"),
]


@pytest.mark.parametrize(("build", "fmt"), POISON)
def test_a_poison_batch_ends_within_its_attempts_and_a_good_batch_beside_it_imports(
    build: object, fmt: str
) -> None:
    assert callable(build)
    poison = _create(build(), fmt)
    good = _create(GOOD_CSV, "csv")
    # The queue delivers both once; the sweeper does the rest.
    for batch in (poison, good):
        pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    _sweep_until_final(poison, good)
    _consistent(poison)
    assert poison.status == ImportBatch.Status.DONE_WITH_REJECTIONS, poison.error
    assert poison.inserted > 0 and poison.rejected == 1
    assert poison.attempts <= 3
    assert (good.status, good.inserted) == (ImportBatch.Status.DONE, 2)
    assert _staging_left() == []
    if poison.status == ImportBatch.Status.FAILED:
        assert AuditLogEntry.objects.filter(
            event_type=AuditEvent.IMPORT_BATCH_FAILED, target_id=str(poison.pk)
        ).exists()


@pytest.mark.parametrize(("build", "fmt"), POISON)
def test_a_poison_file_through_the_command_exits_with_its_documented_code(
    build: object, fmt: str, tmp_path: Path
) -> None:
    assert callable(build)
    path = tmp_path / f"poison.{'xml' if fmt == 'espi' else fmt}"
    path.write_bytes(build())
    code, summary = _command(path, "--format", fmt, "--register-meters")
    batch = ImportBatch.objects.get(public_id=summary["batch"])
    _consistent(batch)
    expected = {
        ImportBatch.Status.DONE: 0,
        ImportBatch.Status.DONE_WITH_REJECTIONS: 3,
        ImportBatch.Status.REJECTED: 4,
        ImportBatch.Status.FAILED: 1,
    }[ImportBatch.Status(batch.status)]
    assert (code, summary["status"]) == (expected, batch.status)
    assert (code, batch.status) == (3, ImportBatch.Status.DONE_WITH_REJECTIONS)
    assert _staging_left() == []


FAULT = """
CREATE FUNCTION pg_temp.injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.register_id = %s THEN
        RAISE EXCEPTION 'injected fault on register %%', NEW.register_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER injected_fault BEFORE INSERT ON meters_readingside
    FOR EACH ROW EXECUTE FUNCTION pg_temp.injected_fault();
CREATE TRIGGER injected_fault BEFORE INSERT ON meters_channelday
    FOR EACH ROW EXECUTE FUNCTION pg_temp.injected_fault();
"""


def _two_chunks_the_second_poisoned(settings: Any) -> bytes:
    """GOOD2 merges in the first chunk; inserting POISON2's readings raises in the second."""
    settings.PORTAL_IMPORT_CHUNK_ROWS = 2
    registers = []
    for serial in ("GOOD2", "POISON2"):
        meter = Meter.objects.create(serial=serial, kind="electricity", max_rate=250_000)
        registers.append(
            Register.objects.create(meter=meter, code="import", unit="Wh", is_main=True)
        )
    with connection.cursor() as cursor:
        cursor.execute(FAULT % registers[1].pk)
    return _two_chunks_content()


def _drop_fault() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER injected_fault ON meters_readingside")
        cursor.execute("DROP TRIGGER injected_fault ON meters_channelday")


def test_a_fault_mid_merge_fails_the_batch_after_the_last_attempt(
    settings: Any,
) -> None:
    batch = _create(_two_chunks_the_second_poisoned(settings), "csv", register_meters=False)
    good = _create(GOOD_CSV, "csv")
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    # Not over yet: the error is kept, and the batch waits for its next attempt.
    assert (batch.status, batch.attempts) == (ImportBatch.Status.QUEUED, 1)
    assert batch.next_attempt_at is not None and "injected fault" in batch.error
    pipeline.run(batch_id=good.pk, actor=SYSTEM, as_of=timezone.now())
    _sweep_until_final(batch, good)
    batch = ImportBatch.objects.get(pk=batch.pk)
    assert (batch.status, batch.attempts) == (ImportBatch.Status.FAILED, 3)
    assert batch.error_class == "psycopg.errors.RaiseException"
    assert "injected fault" in batch.error
    # The first chunk's checkpoint held through every attempt: it was merged once.
    assert (batch.chunks_done, batch.chunks_total, batch.inserted) == (1, 2, 2)
    assert batch.finished_at is not None and batch.next_attempt_at is None
    assert _staging_left() == []
    entry = AuditLogEntry.objects.get(
        event_type=AuditEvent.IMPORT_BATCH_FAILED, target_id=str(batch.pk)
    )
    assert entry.data["error_class"] == "psycopg.errors.RaiseException"
    assert (good.status, good.inserted) == (ImportBatch.Status.DONE, 2)

    # The same content again is not a duplicate of a failed batch: it is imported.
    _drop_fault()
    again = run_import(_two_chunks_content(), register_meters=False)
    assert (again.status, again.duplicate_of) == (ImportBatch.Status.DONE, None)
    assert (again.inserted, again.duplicate) == (2, 2)


def _two_chunks_content() -> bytes:
    return (
        HEADER
        + "".join(
            f"{serial},2026-03-01T00:{minute:02d}:00Z,{value},kWh,electricity\n"
            for serial in ("GOOD2", "POISON2")
            for minute, value in ((0, 1.0), (15, 1.5))
        )
    ).encode()


def test_a_fault_mid_merge_through_the_command_exits_1_without_a_traceback(
    settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fault.csv"
    path.write_bytes(_two_chunks_the_second_poisoned(settings))
    code, summary = _command(path)
    assert (code, summary["status"]) == (1, "failed")
    # One line per failed attempt; the traceback only with -v 2 or --traceback.
    attempts = [r for r in caplog.records if r.name == "meters.ingest.pipeline"]
    assert len(attempts) == 3 and all(r.exc_info is None for r in attempts)
    assert "RaiseException" in attempts[-1].getMessage()
    assert summary["error_class"] == "psycopg.errors.RaiseException"
    batch = ImportBatch.objects.get(public_id=summary["batch"])
    assert batch.attempts == 3
    assert _staging_left() == []


def test_a_worker_lost_on_the_last_attempt_ends_the_batch_failed() -> None:
    batch = _create(GOOD_CSV, "csv")
    # As a worker killed three times leaves it: running, its lock free, attempts used up.
    ImportBatch.objects.filter(pk=batch.pk).update(
        status=ImportBatch.Status.RUNNING, attempts=3, stage="parsing"
    )
    _sweep_until_final(batch)
    assert (batch.status, batch.attempts, batch.error_class) == (
        ImportBatch.Status.FAILED,
        3,
        "WorkerLost",
    )
    assert "3" in batch.error


# --- rejections -----------------------------------------------------------------------------


def test_a_csv_with_only_a_header_is_rejected_and_exits_4(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(HEADER)
    code, summary = _command(path)
    assert (code, summary["status"]) == (4, "rejected")
    batch = ImportBatch.objects.get(public_id=summary["batch"])
    assert batch.seen == 0 and "no data rows" in batch.error


def test_a_file_whose_every_row_is_rejected_is_rejected_and_exits_4(tmp_path: Path) -> None:
    path = tmp_path / "gas.xml"
    path.write_bytes((DATA / "greenbutton" / "gas_containerized.xml").read_bytes())
    code, summary = _command(path, "--register-meters")
    assert (code, summary["status"]) == (4, "rejected")
    batch = ImportBatch.objects.get(public_id=summary["batch"])
    _consistent(batch)
    assert batch.seen == batch.rejected > 0
    assert "rejected" in batch.error


def test_some_rows_rejected_is_done_with_rejections_exit_3_and_a_duplicate_says_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "some.csv"
    path.write_text(
        HEADER
        + "S1,2026-03-01T00:00:00Z,1.0,kWh,electricity\n"
        + "S1,1989-03-01T00:15:00Z,1.5,kWh,electricity\n"
    )
    code, summary = _command(path, "--register-meters")
    assert (code, summary["status"], summary["inserted"], summary["rejected"]) == (
        3,
        "done_with_rejections",
        1,
        1,
    )
    _consistent(ImportBatch.objects.get(public_id=summary["batch"]))
    # The same file again: a duplicate, which exits as its original did and says how it ended.
    code, summary = _command(path, "--register-meters")
    assert (code, summary["status"], summary["outcome"]) == (
        3,
        "duplicate",
        "done_with_rejections",
    )
    # Waiting for a duplicate of a finished batch: no worker needed, the same exit.
    code, summary = _command(path, "--register-meters", mode="--wait")
    assert (code, summary["status"], summary["outcome"]) == (
        3,
        "duplicate",
        "done_with_rejections",
    )


def test_all_rows_accepted_is_done_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "good.csv"
    path.write_bytes(GOOD_CSV)
    code, summary = _command(path, "--register-meters")
    assert (code, summary["status"]) == (0, "done")


def test_usage_problems_exit_2(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("import_readings", str(tmp_path / "missing.csv"), "--inline")
    assert raised.value.returncode == 2


def test_a_dsmr_telegram_with_a_bad_crc_is_rejected_and_exits_4(tmp_path: Path) -> None:
    text = (DATA / "dsmr" / "TELEGRAM_V5.txt").read_text()
    path = tmp_path / "p1.txt"
    path.write_text(text.replace("1-0:1.8.1(000004.426*kWh)", "1-0:1.8.1(000009.426*kWh)"))
    code, summary = _command(path, "--format", "dsmr", "--register-meters")
    assert (code, summary["status"]) == (4, "rejected")
    _consistent(ImportBatch.objects.get(public_id=summary["batch"]))


def test_the_sweeper_waits_for_the_backoff_before_the_next_attempt(settings: Any) -> None:
    from meters.selectors.imports import batches_needing_a_worker

    settings.PORTAL_IMPORT_RETRY_BACKOFF = (600, 1200)
    batch = _create(_two_chunks_the_second_poisoned(settings), "csv", register_meters=False)
    before = timezone.now()
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    after = timezone.now()
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.QUEUED and batch.next_attempt_at is not None
    wait = dt.timedelta(seconds=600)  # the first backoff
    assert before + wait <= batch.next_attempt_at <= after + wait
    later = timezone.now() + dt.timedelta(hours=1)
    # Long after it was created, but before its next attempt is due: left alone.
    assert batch.pk not in batches_needing_a_worker(
        queued_before=later, as_of=batch.next_attempt_at - dt.timedelta(seconds=1)
    )
    assert batch.pk in batches_needing_a_worker(queued_before=later, as_of=batch.next_attempt_at)


# --- where people read the state ---------------------------------------------------------------


def test_the_page_and_the_api_show_the_final_state_and_the_error_class(
    settings: Any,
) -> None:
    from django.template.loader import render_to_string
    from django.test import RequestFactory
    from django.utils import translation

    from meters.api import BatchOutputSerializer

    batch = _create(_two_chunks_the_second_poisoned(settings), "csv", register_meters=False)
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    _sweep_until_final(batch)
    data = BatchOutputSerializer(batch).data
    assert (data["status"], data["outcome"], data["attempts"]) == ("failed", "failed", 3)
    assert data["error_class"] == "psycopg.errors.RaiseException"
    assert "injected fault" in data["error"]

    empty = _create(HEADER.encode(), "csv")
    pipeline.run(batch_id=empty.pk, actor=SYSTEM, as_of=timezone.now())
    empty.refresh_from_db()
    again = _create(HEADER.encode(), "csv")
    assert (again.status, again.duplicate_of) == (ImportBatch.Status.DUPLICATE, empty)
    assert BatchOutputSerializer(again).data["outcome"] == "rejected"

    request = RequestFactory().get("/")
    with translation.override("en"):
        page = render_to_string(
            "meters/_import_status.html", {"batch": empty, "running": False}, request
        )
        assert "The file has no data rows" in page
        page = render_to_string(
            "meters/_import_status.html", {"batch": batch, "running": False}, request
        )
        assert "each of its 3 attempts" in page
    with translation.override("zh-hant"):
        page = render_to_string(
            "meters/_import_status.html", {"batch": empty, "running": False}, request
        )
        assert "The file has no data rows" not in page


# --- staging lost (a crash of PostgreSQL empties UNLOGGED tables), rows accounted for ------

TWO_METERS_CSV = (
    HEADER
    + "".join(
        f"{serial},2026-03-01T00:{minute:02d}:00Z,{value},kWh,electricity\n"
        for serial in ("S1", "S2")
        for value, minute in ((1, 0), (2, 15), (3, 30))
    )
).encode()


def _emptied(batch: ImportBatch) -> None:
    """What crash recovery did to the UNLOGGED staging tables of a running batch."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE meters_stage_{batch.pk}, meters_stagev_{batch.pk}")


@pytest.mark.parametrize("after", ["parsing", "one chunk merged"])
def test_a_batch_whose_staging_was_emptied_starts_again_from_its_file(
    after: str, settings: Any
) -> None:
    # Issue 12, fault 1: the resume rebuilt its plan from the emptied table and ended "done"
    # with readings missing. Now the next stage sees the loss and parses the file again.
    settings.PORTAL_IMPORT_CHUNK_ROWS = 1  # one chunk per register: two chunks
    batch = _create(TWO_METERS_CSV, "csv")
    batch.status = ImportBatch.Status.RUNNING
    pipeline.stage_payload(batch, None)
    if after == "one chunk merged":
        pipeline.resolve(batch, subtree=None)
        pipeline.merge_chunk(batch, pipeline.chunk_plan(batch)[0])
    _emptied(batch)
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.DONE, batch.error
    assert batch.seen == 6
    assert batch.inserted + batch.duplicate == 6  # rows merged before the loss: duplicates now
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM meters_reading r JOIN meters_register g ON g.id = r.register_id "
            "JOIN meters_meter m ON m.id = g.meter_id WHERE m.serial IN ('S1', 'S2')"
        )
        assert cursor.fetchone()[0] == 6
    assert _staging_left() == []


def test_a_batch_that_cannot_account_for_its_rows_is_never_done(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.PORTAL_IMPORT_CHUNK_ROWS = 1
    real = pipeline.merge_chunk

    def loses_the_second_chunk(batch: ImportBatch, registers: list[int]) -> None:
        if batch.chunks_done == 1:
            batch.chunks_done += 1  # the checkpoint moves on, the rows never land
            return
        real(batch, registers)

    monkeypatch.setattr(pipeline, "merge_chunk", loses_the_second_chunk)
    batch = _create(TWO_METERS_CSV, "csv")
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    _sweep_until_final(batch)
    assert batch.status == ImportBatch.Status.FAILED
    assert batch.error_class.endswith("RowsUnaccounted")
    assert "6 rows read, 3 accounted for" in batch.error
