"""A Redis outage while a real worker runs a long import (issue 12, fault 2).

The broker is a Redis of the test's own, on a free port (never the shared one): it is stopped
in the middle of the import's merge and started again on the same port a few seconds later.
The import must end done with every row stored once, the worker must still be serving, and a
task sent after Redis came back must run.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from meters.models import ImportBatch
from meters.services.imports import batch_create
from meters.tasks import import_batch_task
from portal.celery import app
from tests.celery_workers import worker_process
from tests.factories import SYSTEM
from tests.private_redis import PrivateRedis

ROOT = Path(__file__).resolve().parents[2]
METERS, QUARTERS = 12, 4 * 24 * 10  # 11,520 readings, one register a chunk: 12 chunks
pytestmark = pytest.mark.slow

# Each merge statement waits a second, so that the outage lands in the middle of the merge
# whatever the machine's speed. A real function (not pg_temp): the worker's session runs it.
SLOW_MERGE = """
CREATE FUNCTION public.test_outage_slow_merge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(1);
    RETURN NULL;
END $$;
CREATE TRIGGER test_outage_slow_merge AFTER INSERT ON meters_channelday
    FOR EACH STATEMENT EXECUTE FUNCTION public.test_outage_slow_merge();
"""


def _csv(prefix: str, meters: int = METERS, quarters: int = QUARTERS) -> bytes:
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    lines = ["meter_serial,timestamp,value,unit,kind"]
    for meter in range(meters):
        value = 1000.0 + meter
        for q in range(quarters):
            value += 0.05 + (q % 11) * 0.01
            ts = start + dt.timedelta(minutes=15 * q)
            lines.append(f"{prefix}{meter:03d},{ts:%Y-%m-%dT%H:%M:%SZ},{value:.3f},kWh,electricity")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slow_merge(transactional_db: None) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(SLOW_MERGE)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_outage_slow_merge ON meters_channelday")
            cursor.execute("DROP FUNCTION IF EXISTS public.test_outage_slow_merge()")


@pytest.fixture
def broker(transactional_db: None) -> Iterator[None]:
    """This xdist worker's own broker database (where batch_create's task goes, unconsumed),
    empty before and after the test."""
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]


def _worker(broker_url: str, log: Path) -> subprocess.Popen[bytes]:
    """A worker as `make run` starts one (two processes: one runs the import, the other
    slot keeps a BRPOP in flight), on the private Redis."""
    return worker_process(
        "--concurrency",
        "2",
        "-Q",
        "default,notifications,readings,billing",
        "--loglevel",
        "INFO",
        env={"PORTAL_TEST_BROKER_URL": broker_url, "PORTAL_IMPORT_CHUNK_ROWS": str(QUARTERS)},
        log=log,
    )


def _send(batch: ImportBatch, broker_url: str) -> None:
    with app.connection_for_write(broker_url) as conn:
        import_batch_task.apply_async(kwargs={"batch_id": batch.pk}, connection=conn)  # type: ignore[call-arg]


def _create(content: bytes) -> ImportBatch:
    return batch_create(
        source="command",
        fmt="csv",
        content=io.BytesIO(content),
        actor=SYSTEM,
        register_meters=True,
        as_of=timezone.now(),
    )


def _wait(
    batch: ImportBatch,
    condition: str,
    worker: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 120,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch.refresh_from_db()
        if eval(condition, {"b": batch}):  # noqa: S307 - test-local expressions
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {condition}: {batch.status} {batch.stage} "
        f"{batch.chunks_done}/{batch.chunks_total}; worker exit code {worker.poll()}; "
        f"worker log:\n{log.read_text()[-4000:]}"
    )


@pytest.mark.parametrize(
    "back",
    ["before_the_import_ends", "after_the_import_ended"],
)
def test_a_redis_outage_mid_import_leaves_the_worker_serving(
    back: str, broker: None, slow_merge: None, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = _worker(private_redis.url, log)
    try:
        batch = _create(_csv("R"))
        _send(batch, private_redis.url)
        _wait(batch, "b.stage == 'merging' and 2 <= b.chunks_done", worker, log)
        private_redis.stop()
        if back == "before_the_import_ends":
            time.sleep(4)  # the worker notices the lost connection and retries meanwhile
        else:
            # The task ends while Redis is down: its late ack waits for the reconnection.
            _wait(batch, "b.status == 'done'", worker, log)
            time.sleep(2)
        private_redis.start()
        _wait(batch, "b.status == 'done'", worker, log)
        # A task sent once Redis is back runs, on the same worker.
        later = _create(_csv("L", meters=2, quarters=8))
        _send(later, private_redis.url)
        _wait(later, "b.status == 'done'", worker, log)
        assert worker.poll() is None, log.read_text()
        # The running task's message was acknowledged after the reconnection: nothing is
        # left for Redis to deliver again after the visibility timeout.
        client = private_redis.client()
        try:
            assert (client.hlen("unacked"), client.llen("readings")) == (0, 0)
        finally:
            client.close()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    text = log.read_text()
    assert "Unrecoverable error" not in text, text
    assert text.count("import_batch_task[") == 4  # each task received once and done once
    assert (batch.seen, batch.inserted, batch.duplicate, batch.rejected) == (
        METERS * QUARTERS,
        METERS * QUARTERS,
        0,
        0,
    )
    assert batch.attempts == 1 and batch.chunks_done == batch.chunks_total == METERS
    later.refresh_from_db()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT (register_id, ts)) FROM meters_reading")
        assert cursor.fetchone() == (METERS * QUARTERS + later.inserted,) * 2
