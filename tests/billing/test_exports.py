"""Residents' data exports: the ZIP's files and rows, the previous occupant left out, progress,
idempotent and restartable builds, failures, expiry, and the Green Button round trip. The pages
are tested in tests/web/test_export.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import zipfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection, transaction
from django.utils import timezone

from billing.models import Bill, BillLine, DataExport, export_storage
from billing.services import exports
from billing.services.exports import (
    export_build,
    export_request,
    exports_sweep,
)
from billing.services.ledger import wallet_adjust, wallet_create
from billing.tasks.exports import export_build_task
from meters.models import ImportBatch, Meter, MeterInstallation, RollupHourly, ServicePoint
from meters.services.imports import batch_create
from meters.services.supply import supply_start
from meters.tasks import import_batch_task
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.celery import app
from portal.tenancy.models import Account
from tests.billing.helpers import bill_numbers
from tests.conftest import World
from tests.factories import SYSTEM, make_account
from tests.meters.helpers import csv_rows, quarter_hours, run_import

NOW = dt.datetime(2026, 4, 2, 3, 0, tzinfo=dt.UTC)
DAY = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
MOVE = DAY + dt.timedelta(hours=12)  # the previous occupant moves out, the new one in
FORMULA_CODE = "=HYPERLINK(1)"
DATA = Path(__file__).resolve().parents[1] / "data"


def _build(export: DataExport) -> DataExport:
    built = export_build(export_id=export.pk, actor=SYSTEM, as_of=NOW)
    assert built is not None
    return built


def _members(export: DataExport) -> dict[str, bytes]:
    export.refresh_from_db()
    with export.file.open("rb") as handle, zipfile.ZipFile(handle) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _events(event: AuditEvent) -> list[AuditLogEntry]:
    return list(AuditLogEntry.objects.filter(event_type=event).order_by("id"))


@pytest.fixture
def moved_in(world: World) -> tuple[Account, Account, ServicePoint]:
    """A service point whose previous occupant moved out at noon and account A moved in; a day
    of 15-minute register readings through the real import; a bill for each occupant; a wallet
    with a credit and a debit for account A."""
    sp = ServicePoint.objects.create(code=FORMULA_CODE, kind="electricity", time_zone="UTC")
    meter = Meter.objects.create(serial="EXP-1", kind="electricity", max_rate=50_000)
    MeterInstallation.objects.create(
        meter=meter, service_point=sp, installed_at=DAY - dt.timedelta(days=1)
    )
    previous = make_account("Previous occupant")
    supply_start(
        account=previous, service_point=sp, start=DAY - dt.timedelta(days=1), end=MOVE, actor=SYSTEM
    )
    supply_start(account=world.account_a, service_point=sp, start=MOVE, actor=SYSTEM)
    times = quarter_hours(DAY, 97)  # 00:00 to 24:00
    values = [1_000_000 + 10 * i * i for i in range(97)]  # Wh, rising faster through the day
    batch = run_import(
        csv_rows(
            "EXP-1", [(t.isoformat(), v) for t, v in zip(times, values, strict=True)], unit="Wh"
        )
    )
    assert batch.inserted == 97
    for account, number in ((previous, 7), (world.account_a, 8)):
        bill = Bill.objects.create(
            account=account,
            **bill_numbers(number),
            period_start=dt.date(2026, 3, 1),
            period_end=dt.date(2026, 4, 1),
            currency="TWD",
            status=Bill.Status.ISSUED,
            subtotal=12_000,
            tax=600,
            total=12_600,
            issued_at=NOW,
            created_at=NOW,
        )
        BillLine.objects.create(
            bill=bill,
            position=1,
            kind=BillLine.Kind.CONSUMPTION,
            service_point=sp,
            label=f"=cmd|' /C calc'!A0 {account.name}",
            quantity=Decimal("48.000000"),
            unit="kWh",
            unit_price=Decimal("2.500000"),
            amount=12_000,
        )
    wallet = wallet_create(account=world.account_a, actor=SYSTEM)
    for amount, key in ((50_000, "in"), (-1_234, "out")):
        wallet_adjust(
            wallet=wallet,
            amount=amount,
            reason="-goodwill",
            idempotency_key=key,
            actor=SYSTEM,
            as_of=NOW,
        )
    return previous, world.account_a, sp


# --- The ZIP ---------------------------------------------------------------------------------


def test_the_zip_holds_the_accounts_own_data_and_nothing_of_the_previous_occupant(
    moved_in: tuple[Account, Account, ServicePoint],
) -> None:
    _previous, account, _sp = moved_in
    export = _build(export_request(account=account, actor=SYSTEM, as_of=NOW))
    assert export.status == DataExport.Status.DONE
    assert export.finished_at is not None
    assert export.expires_at == export.finished_at + dt.timedelta(days=7)
    files = _members(export)
    assert set(files) == {
        "README.txt",
        "readings.csv",
        "consumption_daily.csv",
        "consumption.xml",
        "bills.csv",
        "ledger.csv",
    }
    readings = _rows(files["readings.csv"])
    # Readings whose interval starts at the move-in or later: 12:15 to 24:00.
    assert len(readings) == 48
    assert readings[0]["timestamp"] == "2026-03-01T12:15:00Z"
    assert readings[0]["interval_start"] == "2026-03-01T12:00:00Z"
    assert readings[-1]["timestamp"] == "2026-03-02T00:00:00Z"
    assert all(r["timestamp"] > "2026-03-01T12:00:00Z" for r in readings)
    assert readings[0]["register_value"] == str(1_000_000 + 10 * 49 * 49)
    assert readings[0]["consumption"] == str(10 * (49 * 49 - 48 * 48))
    assert readings[-1]["quality"] == "pending"  # the newest reading awaits its successor
    # The service point's code would run as a formula in a spreadsheet: neutralised.
    assert {r["service_point"] for r in readings} == {"'" + FORMULA_CODE}
    daily = _rows(files["consumption_daily.csv"])
    assert [(d["service_point"], d["day"], d["unit"]) for d in daily] == [
        ("'" + FORMULA_CODE, "2026-03-01", "Wh")
    ]
    assert int(daily[0]["consumption"]) == sum(int(r["consumption"]) for r in readings)
    assert int(daily[0]["hours"]) == 12
    bills = _rows(files["bills.csv"])
    assert [b["bill_number"] for b in bills] == ["RES-2026-000008"]
    assert bills[0]["label"].startswith("'=cmd")
    assert "Previous occupant" not in files["bills.csv"].decode()
    assert bills[0]["bill_total"] == "126.00" and bills[0]["amount"] == "120.00"
    ledger = _rows(files["ledger.csv"])
    assert [(row["amount"], row["balance"]) for row in ledger] == [
        ("500.00", "500.00"),
        ("-12.34", "487.66"),  # a negative number stays a number
    ]
    assert {row["memo"] for row in ledger} == {"'-goodwill"}  # text starting with - is quoted
    assert "readings.csv" in files["README.txt"].decode()
    assert export.rows_done == export.rows_total == 48 + 1 + 12 + 1 + 2


def test_the_previous_occupant_gets_only_their_own_half_of_the_day(
    moved_in: tuple[Account, Account, ServicePoint],
) -> None:
    previous, _account, _sp = moved_in
    files = _members(_build(export_request(account=previous, actor=SYSTEM, as_of=NOW)))
    readings = _rows(files["readings.csv"])
    assert len(readings) == 49  # 00:00 (the first, without an interval) to 12:00
    assert all(r["timestamp"] <= "2026-03-01T12:00:00Z" for r in readings)
    assert [b["bill_number"] for b in _rows(files["bills.csv"])] == ["RES-2026-000007"]
    assert _rows(files["ledger.csv"]) == []  # no wallet


# --- Requests, idempotency, restarts, failures ------------------------------------------------


def test_asking_again_while_one_is_open_returns_it(world: World) -> None:
    first = export_request(account=world.account_a, actor=SYSTEM, as_of=NOW)
    again = export_request(account=world.account_a, actor=SYSTEM, as_of=NOW)
    assert again.pk == first.pk
    assert len(_events(AuditEvent.DATA_EXPORT_REQUESTED)) == 1
    _build(first)
    # Within the hour the finished copy is handed out again (a script cannot fill the disk)...
    assert export_request(account=world.account_a, actor=SYSTEM, as_of=NOW).pk == first.pk
    # ...and after it a new export is built.
    later = NOW + exports.REUSE_WITHIN + dt.timedelta(minutes=1)
    third = export_request(account=world.account_a, actor=SYSTEM, as_of=later)
    assert third.pk != first.pk


def test_an_export_that_keeps_killing_its_worker_fails_for_good(world: World) -> None:
    export = export_request(account=world.account_a, actor=SYSTEM, as_of=NOW)
    DataExport.objects.filter(pk=export.pk).update(
        status=DataExport.Status.RUNNING, attempts=exports.MAX_ATTEMPTS
    )
    export = _build(export)
    assert export.status == DataExport.Status.FAILED
    assert "could not be built after 3 attempts" in export.error
    assert not export.file
    # The account is not stuck: a new request queues a new export.
    assert export_request(account=world.account_a, actor=SYSTEM, as_of=NOW).pk != export.pk


def test_a_redelivered_task_for_a_finished_export_does_nothing(world: World) -> None:
    export = _build(export_request(account=world.account_a, actor=SYSTEM, as_of=NOW))
    path = Path(export.file.path)
    written = path.stat().st_mtime_ns
    assert export_build_task(export_id=export.pk) == "done"
    export.refresh_from_db()
    assert export.attempts == 1
    assert path.stat().st_mtime_ns == written
    assert len(_events(AuditEvent.DATA_EXPORT_FINISHED)) == 1


def test_a_crashed_build_starts_again_from_nothing(world: World) -> None:
    export = export_request(account=world.account_a, actor=SYSTEM, as_of=NOW)
    # What a worker killed mid-build leaves: the export running, a half-written temp file.
    DataExport.objects.filter(pk=export.pk).update(
        status=DataExport.Status.RUNNING, attempts=1, rows_done=40, rows_total=90
    )
    directory = Path(export_storage().location)
    directory.mkdir(parents=True, exist_ok=True)
    leftover = directory / f".building-{export.public_id}-crashed.zip"
    leftover.write_bytes(b"PK half")
    export = _build(export)
    assert export.status == DataExport.Status.DONE
    assert export.attempts == 2
    assert not leftover.exists()
    assert zipfile.is_zipfile(export.file.path)


def test_a_build_another_worker_holds_is_skipped(world: World) -> None:
    export = export_request(account=world.account_a, actor=SYSTEM, as_of=NOW)
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as other:
        # Another worker's connection holds the export's lock.
        other.execute("SELECT pg_advisory_lock(%s, %s)", [exports._LOCK_NAMESPACE, export.pk])
        assert export_build(export_id=export.pk, actor=SYSTEM, as_of=NOW) is None
    export.refresh_from_db()
    assert export.status == DataExport.Status.QUEUED


def test_progress_is_saved_as_rows_are_written(
    moved_in: tuple[Account, Account, ServicePoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    _previous, account, _sp = moved_in
    export = export_request(account=account, actor=SYSTEM, as_of=NOW)
    seen: list[tuple[str, int, int]] = []

    def watch(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(**kwargs: Any) -> Any:
            row = DataExport.objects.values_list("part", "rows_done", "rows_total").get(
                pk=export.pk
            )
            seen.append(row)
            return real(**kwargs)

        return wrapped

    monkeypatch.setattr(exports, "PROGRESS_EVERY", 10)
    for name in ("export_readings_copy", "export_daily_copy", "export_hourly_values"):
        monkeypatch.setattr(exports, name, watch(name, getattr(exports, name)))
    _build(export)
    assert seen[0] == ("readings.csv", 0, 64)
    assert ("consumption_daily.csv", 48, 64) in seen
    assert seen[-1][0] == "consumption.xml" and 48 < seen[-1][1] < 64
    export.refresh_from_db()
    assert (export.rows_done, export.rows_total, export.part) == (64, 64, "")


def test_a_failed_export_records_a_clear_error_and_keeps_no_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(exports, "export_daily_copy", broken)
    export = _build(export_request(account=world.account_a, actor=SYSTEM, as_of=NOW))
    assert export.status == DataExport.Status.FAILED
    assert "consumption_daily.csv" in export.error and "RuntimeError" in export.error
    assert not export.file
    assert not list(Path(export_storage().location).glob(f".building-{export.public_id}-*"))
    (entry,) = _events(AuditEvent.DATA_EXPORT_FINISHED)
    assert entry.data["outcome"] == "failed"
    # A failed export does not block a new one.
    assert export_request(account=world.account_a, actor=SYSTEM, as_of=NOW).pk != export.pk


def test_expired_exports_lose_their_files(
    world: World, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    export = _build(export_request(account=world.account_a, actor=SYSTEM, as_of=NOW))
    path = Path(export.file.path)
    assert exports_sweep(as_of=NOW) == (0, 0)
    assert export.expires_at is not None
    later = export.expires_at + dt.timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert exports_sweep(as_of=later) == (1, 0)
    export.refresh_from_db()
    assert export.status == DataExport.Status.EXPIRED and not export.file
    assert not path.exists()


# --- Green Button round trip -----------------------------------------------------------------


def _import(content: bytes, fmt: str) -> ImportBatch:
    """The real import path: a batch, then its Celery task (run here, as a worker would)."""
    batch = batch_create(
        source=ImportBatch.Source.COMMAND,
        fmt=fmt,
        content=io.BytesIO(content),
        actor=SYSTEM,
        original_name=f"round-trip.{fmt}",
        register_meters=True,
        as_of=NOW,
    )
    assert import_batch_task(batch_id=batch.pk) == "done"
    batch.refresh_from_db()
    return batch


def _hours(**filters: Any) -> dict[dt.datetime, int]:
    return dict(
        RollupHourly.objects.filter(**filters).order_by("hour").values_list("hour", "consumption")
    )


def test_the_green_button_feed_imports_back_into_the_same_hourly_consumption(
    world: World,
) -> None:
    # A real Green Button file (216 hours of electricity), a water meter counting litres every
    # 15 minutes, and a rooftop solar meter with an import register and export interval data.
    _import((DATA / "greenbutton" / "TestGBDataHourlyNineDaysBinnedDaily.xml").read_bytes(), "espi")
    times = quarter_hours(DAY, 97)
    _import(
        csv_rows(
            "WAT-1",
            [(t.isoformat(), 500_000 + 7 * i * i) for i, t in enumerate(times)],
            unit="L",
            kind="water",
        ).encode(),
        "csv",
    )
    solar = ["meter_serial,register,timestamp,value,delta,duration,unit,kind,direction"]
    for i, t in enumerate(times[1:], start=1):
        solar.append(f"PV-1,import,{t.isoformat()},{20_000 + 40 * i},,,Wh,electricity,import")
        made = max(0, 900 - abs(48 - i) * 30)  # a sunny day's bell curve
        solar.append(f"PV-1,export,{t.isoformat()},,{made},900,Wh,electricity,export")
    _import(("\n".join(solar) + "\n").encode(), "csv")
    account = world.account_a
    points = list(ServicePoint.objects.order_by("code"))
    assert len(points) == 3
    for sp in points:
        supply_start(
            account=account,
            service_point=sp,
            start=dt.datetime(2010, 1, 1, tzinfo=dt.UTC),
            actor=SYSTEM,
        )

    export = _build(export_request(account=account, actor=SYSTEM, as_of=NOW))
    feed = _members(export)["consumption.xml"]
    batch = _import(feed, "espi")
    assert batch.rejected == 0

    compared = 0
    for sp in points:
        copy = ServicePoint.objects.get(code=f"SP-{sp.public_id}")  # the fresh service point
        assert copy.kind == sp.kind
        for direction in ("import", "export"):
            original = _hours(account=account, service_point=sp, direction=direction)
            assert _hours(service_point=copy, direction=direction) == original, (sp, direction)
            compared += len(original)
    assert compared == 216 + 24 + 24 + 24
    assert Meter.objects.get(serial=str(points[-1].public_id)).registers.get().unit == "L"


# --- Through a real worker -------------------------------------------------------------------


@pytest.fixture
def billing_worker(transactional_db: None) -> Iterator[None]:
    """A Celery worker on this test's broker database, consuming the billing queue (as in
    tests/portal/tenancy/test_tasks_worker.py)."""
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]
    with start_worker(app, pool="solo", queues=["billing"], perform_ping_check=False):
        yield
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # type: ignore[attr-defined]


def test_a_requested_export_is_built_by_the_worker(billing_worker: None) -> None:
    account = make_account("Worker export")
    with transaction.atomic():
        export = export_request(account=account, actor=SYSTEM, as_of=timezone.now())
    deadline = time.monotonic() + 60
    while not export.finished and time.monotonic() < deadline:
        time.sleep(0.1)
        export.refresh_from_db()
    assert export.status == DataExport.Status.DONE
    assert zipfile.is_zipfile(export.file.path)
    (entry,) = _events(AuditEvent.DATA_EXPORT_FINISHED)
    assert entry.actor_label == "task:billing.export_build"
