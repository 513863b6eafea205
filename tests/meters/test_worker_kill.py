"""A real Celery worker process, killed with SIGKILL in the middle of a large import, then
replaced: the batch resumes from its checkpoint and every row is stored exactly once."""

from __future__ import annotations

import datetime as dt
import io
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from meters.models import ImportBatch
from meters.services.imports import batch_create
from meters.tasks import import_sweeper_task
from portal.celery import app
from tests.celery_workers import worker_process
from tests.factories import SYSTEM

ROOT = Path(__file__).resolve().parents[2]
METERS, QUARTERS = 60, 4 * 24 * 35  # 201,600 readings
pytestmark = pytest.mark.slow


def _csv() -> bytes:
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    lines = ["meter_serial,timestamp,value,unit,kind"]
    for meter in range(METERS):
        value = 1000.0 + meter
        for q in range(QUARTERS):
            value += 0.05 + (q % 11) * 0.01
            ts = start + dt.timedelta(minutes=15 * q)
            lines.append(f"K{meter:03d},{ts:%Y-%m-%dT%H:%M:%SZ},{value:.3f},kWh,electricity")
    return ("\n".join(lines) + "\n").encode()


def _worker() -> subprocess.Popen[bytes]:
    return worker_process(
        "--pool",
        "solo",
        "-Q",
        "readings,default",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        env={"PORTAL_IMPORT_CHUNK_ROWS": "12000"},
    )


@pytest.fixture
def broker(transactional_db: None) -> Iterator[None]:
    """This xdist worker's broker database, empty before and after the test."""
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]


def _wait(batch: ImportBatch, condition: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch.refresh_from_db()
        if eval(condition, {"b": batch}):  # noqa: S307 - test-local expressions
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {condition}: {batch.status} {batch.stage} "
        f"{batch.chunks_done}/{batch.chunks_total} {batch.error}"
    )


def test_a_worker_killed_mid_import_loses_and_duplicates_nothing(broker: None) -> None:
    first = _worker()
    try:
        batch = batch_create(
            source="command",
            fmt="csv",
            content=io.BytesIO(_csv()),
            actor=SYSTEM,
            register_meters=True,
            as_of=timezone.now(),
        )
        _wait(batch, "b.stage == 'merging' and 2 <= b.chunks_done < b.chunks_total - 1")
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = batch.chunks_done
    finally:
        if first.poll() is None:
            first.kill()
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.RUNNING  # stranded until someone resumes it
    second = _worker()
    try:
        # The killed worker's database session ends when PostgreSQL notices (at once when idle,
        # after its running statement otherwise); then the sweeper finds the lock free.
        deadline = time.monotonic() + 60
        while import_sweeper_task.apply().get() < 1:
            assert time.monotonic() < deadline, "the batch was never re-queued"
            time.sleep(0.5)
        _wait(batch, "b.status == 'done'")
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert batch.attempts == 2 and batch.chunks_done == batch.chunks_total > killed_at
    assert (batch.seen, batch.inserted, batch.duplicate, batch.rejected) == (
        METERS * QUARTERS,
        METERS * QUARTERS,
        0,
        0,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT (register_id, ts)) FROM meters_reading")
        assert cursor.fetchone() == (METERS * QUARTERS, METERS * QUARTERS)
        cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'meters_stage%%'")
        assert cursor.fetchone() == (0,)
        # The rollups saw every merged chunk exactly once too.
        cursor.execute(
            "SELECT (SELECT sum(delta) FROM meters_reading WHERE quality <> 4), "
            "(SELECT sum(consumption) FROM meters_rolluphourly), "
            "(SELECT sum(consumption) FROM meters_rollupdaily)"
        )
        readings_total, hourly_total, daily_total = cursor.fetchone()
        assert readings_total == hourly_total == daily_total
