"""A real Celery worker SIGKILLed in the middle of the daily prepaid charge (issue 12, fault
4b): the sweeper queues the run again as soon as the dead worker's database session has let its
lock go, a second worker charges the rest, and every account is charged exactly once for the
day. The broker's visibility timeout stays at 300 s while the test gives the resume 120 s: the
killed task's message is still unacknowledged in Redis when the run is done."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from billing.models import DailyCharge, JournalEntry, PrepaidChargeRun, Wallet
from billing.tasks.charging import prepaid_charge_sweeper_task, prepaid_charge_task
from portal.celery import app
from tests.billing.helpers import hours, make_tariff, supplied
from tests.celery_workers import worker_process

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ACCOUNTS, CHUNK = 24, 2  # 12 chunks, one transaction each
DAY = dt.date(2026, 5, 4)
MIDNIGHT = dt.datetime(2026, 5, 3, 16, 0, tzinfo=dt.UTC)  # 00:00 on DAY in Asia/Taipei
AS_OF = dt.datetime(2026, 5, 5, 0, 0, tzinfo=dt.UTC)  # 08:00 the next day: DAY is due

# Each chunk's statement waits a second: the kill lands between chunks, whatever the machine.
# A real function (not pg_temp): the worker's session runs it.
SLOW_CHUNKS = """
CREATE FUNCTION public.test_slow_charge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(1);
    RETURN NULL;
END $$;
CREATE TRIGGER test_slow_charge AFTER INSERT ON billing_dailycharge
    FOR EACH STATEMENT EXECUTE FUNCTION public.test_slow_charge();
"""


@pytest.fixture
def broker(transactional_db: None) -> Iterator[None]:
    """This xdist worker's broker database, empty before and after the test."""
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]


@pytest.fixture
def slow_chunks(transactional_db: None) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(SLOW_CHUNKS)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_slow_charge ON billing_dailycharge")
            cursor.execute("DROP FUNCTION IF EXISTS public.test_slow_charge()")


def _worker(log: Path) -> subprocess.Popen[bytes]:
    return worker_process(
        "--pool",
        "solo",
        "-Q",
        "billing",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        env={"PREPAID_CHARGE_CHUNK": str(CHUNK)},
        log=log,
    )


def _charged() -> int:
    return DailyCharge.objects.filter(day=DAY).count()


def _wait(condition: str, worker: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = PrepaidChargeRun.objects.order_by("pk").last()
        if eval(condition, {"run": run, "charged": _charged()}):  # noqa: S307 - test-local
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {condition}: {_charged()} charged, run "
        f"{PrepaidChargeRun.objects.values().last()}; worker exit code {worker.poll()}; "
        f"worker log:\n{log.read_text()[-4000:]}"
    )


def test_a_worker_killed_mid_charge_is_resumed_by_the_sweeper_and_charges_once(
    broker: None, slow_chunks: None, tmp_path: Path
) -> None:
    # The resume below must not come from Redis giving the message back.
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == 300
    tariff = make_tariff()
    for _ in range(ACCOUNTS):
        account, sp, _wallet = supplied(tariff=tariff)
        hours(account, sp, MIDNIGHT, [1000] * 24)  # 24 kWh: 73.50 a day with standing and tax
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _worker(first_log)
    try:
        prepaid_charge_task.delay(as_of=AS_OF.isoformat())
        _wait("run is not None and 2 * 2 <= charged < 2 * 10", first, first_log, timeout=120)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    (run,) = PrepaidChargeRun.objects.all()
    assert (run.status, run.attempts) == (PrepaidChargeRun.Status.RUNNING, 1)

    second = _worker(second_log)
    resumed_by = time.monotonic() + 120  # generous; the visibility timeout is 300 s
    try:
        # The killed worker's session ends when PostgreSQL notices (after its running
        # statement); then the sweeper, as beat runs it every 30 s, finds the lock free.
        while prepaid_charge_sweeper_task.apply().get() < 1:
            assert time.monotonic() < resumed_by, "the run was never queued again"
            time.sleep(0.5)
        # The dead session is gone (its lock is free), and the new attempt's first chunk
        # takes a second: these are the charges the killed worker committed.
        killed_at = _charged()
        assert 0 < killed_at < ACCOUNTS
        _wait("run.status == 'done'", second, second_log, timeout=resumed_by - time.monotonic())
        assert second.poll() is None
        # The killed task's message is still waiting for its visibility timeout: the run did
        # not need it.
        with app.connection_for_write() as conn:
            unacked = conn.default_channel.client.hvals("unacked")  # type: ignore[attr-defined]
        assert [m for m in unacked if b"charging.prepaid_charge_task" in m] != []
    finally:
        second.terminate()
        second.wait(timeout=30)

    run.refresh_from_db()
    assert (run.status, run.attempts) == (PrepaidChargeRun.Status.DONE, 2)
    assert run.charged == ACCOUNTS - killed_at  # what the second attempt wrote
    per_account = list(
        DailyCharge.objects.filter(day=DAY).values_list("account_id", flat=True).order_by()
    )
    assert len(per_account) == len(set(per_account)) == ACCOUNTS
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.CHARGE).count() == ACCOUNTS
    assert set(Wallet.objects.values_list("balance", flat=True)) == {-7350}
