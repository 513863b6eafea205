"""The daily prepaid charge: priced from the rollups, once per supply and day."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from billing.models import DailyCharge, JournalEntry, Posting, PrepaidChargeRun, TariffAssignment
from billing.selectors import CHARGE_RUN_LOCK, charge_run_is_locked, charge_runs_running
from billing.services.charging import (
    ChargeRun,
    prepaid_charge_day,
    prepaid_charge_due,
    prepaid_charge_run,
    prepaid_charge_run_resume,
)
from billing.tasks.charging import prepaid_charge_sweeper_task
from meters.models import RollupHourly, ServicePoint
from meters.services.supply import supply_start, supply_update
from portal.celery import app
from portal.tenancy.models import Account
from tests.billing.helpers import hours, make_tariff, supplied
from tests.factories import SYSTEM, make_account

pytestmark = pytest.mark.django_db
TZ = "Asia/Taipei"  # UTC+8, no DST
DAY = dt.date(2026, 5, 4)  # a Monday
MIDNIGHT = dt.datetime(2026, 5, 3, 16, 0, tzinfo=dt.UTC)  # 00:00 local on DAY
NOW = dt.datetime(2026, 5, 5, 0, 0, tzinfo=dt.UTC)


def _charge() -> ChargeRun:
    return prepaid_charge_day(day=DAY, time_zone=TZ, actor=SYSTEM, as_of=NOW)


def test_a_flat_day_is_charged_once_and_moves_the_balance() -> None:
    account, sp, wallet = supplied()
    hours(account, sp, MIDNIGHT, [1000] * 24)  # 24 kWh
    run = _charge()
    charge = DailyCharge.objects.get()
    # 24 kWh x 2.5 = 60.00, standing 10.00, tax 5 % of 70.00 = 3.50
    assert (charge.net, charge.tax, charge.total) == (7000, 350, 7350)
    assert charge.consumption == 24_000
    wallet.refresh_from_db()
    assert wallet.balance == -7350
    assert sum(Posting.objects.values_list("amount", flat=True)) == 0
    assert run.charged == 1
    again = _charge()
    assert (again.charged, DailyCharge.objects.count(), JournalEntry.objects.count()) == (0, 1, 1)
    wallet.refresh_from_db()
    assert wallet.balance == -7350


def test_hours_outside_the_local_day_and_other_accounts_are_not_charged() -> None:
    account, sp, _ = supplied()
    other, other_sp, _ = supplied()
    hours(account, sp, MIDNIGHT - dt.timedelta(hours=2), [5000] * 28)  # 2 h before, 2 h after
    hours(other, other_sp, MIDNIGHT, [9999] * 24)
    _charge()
    charge = DailyCharge.objects.get(account=account)
    assert charge.consumption == 24 * 5000


def test_tiers_count_the_month_to_date_across_days() -> None:
    tiered = {
        "type": "tiered",
        "tiers": [{"up_to": "30", "rate": "1"}, {"up_to": None, "rate": "3"}],
    }
    account, sp, _ = supplied(tariff=make_tariff(tiered, standing="0", tax="0"))
    first = MIDNIGHT - dt.timedelta(days=1)
    hours(account, sp, first, [1000] * 24)  # 24 kWh on 3 May, all in tier 1
    prepaid_charge_day(day=DAY - dt.timedelta(days=1), time_zone=TZ, actor=SYSTEM, as_of=NOW)
    hours(account, sp, MIDNIGHT, [1000] * 24)  # 24 kWh on 4 May: 6 in tier 1, 18 in tier 2
    _charge()
    charge = DailyCharge.objects.get(day=DAY)
    assert charge.total == 6 * 100 + 18 * 300
    assert [line["band"] for line in charge.lines] == ["0-30", "30+"]


def test_time_of_use_bands_follow_the_local_clock() -> None:
    tou = {
        "type": "tou",
        "bands": [
            {"name": "peak", "days": "all", "from": 8, "to": 22, "rate": "4"},
            {"name": "off-peak", "days": "all", "from": 22, "to": 8, "rate": "1"},
        ],
    }
    account, sp, _ = supplied(tariff=make_tariff(tou, standing="0", tax="0"))
    hours(account, sp, MIDNIGHT, [1000] * 24)
    _charge()
    charge = DailyCharge.objects.get()
    # 14 peak hours (08-22 local) and 10 off-peak
    assert charge.total == 14 * 400 + 10 * 100


def test_on_a_move_day_the_standing_charge_is_paid_once_by_the_leaving_occupant() -> None:
    leaving, sp, _ = supplied()
    supply = leaving_supply = sp.supplies.get()
    move = MIDNIGHT + dt.timedelta(hours=12)
    supply_update(supply=leaving_supply, changes={"end": move}, actor=SYSTEM)
    arriving, _, _ = supplied(make_account())  # a wallet for the newcomer
    supply_start(account=arriving, service_point=sp, start=move, actor=SYSTEM)
    TariffAssignment.objects.create(
        account=arriving, service_point=sp, tariff=make_tariff(), valid_from=DAY
    )
    hours(leaving, sp, MIDNIGHT, [1000] * 12)
    hours(arriving, sp, move, [2000] * 12)
    _charge()
    by_account = {c.account_id: c for c in DailyCharge.objects.filter(service_point=sp)}
    assert by_account[leaving.pk].consumption == 12_000
    assert by_account[arriving.pk].consumption == 24_000
    assert [line["kind"] for line in by_account[leaving.pk].lines].count("standing") == 1
    assert "standing" not in [line["kind"] for line in by_account[arriving.pk].lines]
    assert supply.pk


def test_an_account_without_a_tariff_is_reported_not_charged() -> None:
    account, sp, _ = supplied()
    TariffAssignment.objects.filter(account=account).delete()
    hours(account, sp, MIDNIGHT, [1000] * 24)
    run = _charge()
    assert (run.charged, run.without_tariff) == (0, 1)
    assert not DailyCharge.objects.exists()


def test_the_due_run_charges_yesterday_only_after_the_charge_hour() -> None:
    account, sp, _ = supplied()
    hours(account, sp, MIDNIGHT, [1000] * 24)
    early = dt.datetime(2026, 5, 4, 20, 0, tzinfo=dt.UTC)  # 04:00 local on 5 May
    assert prepaid_charge_due(as_of=early, actor=SYSTEM) == []
    later = dt.datetime(2026, 5, 4, 23, 0, tzinfo=dt.UTC)  # 07:00 local
    (run,) = prepaid_charge_due(as_of=later, actor=SYSTEM)
    assert (run.day, run.charged) == (DAY, 1)


def test_tiers_count_from_the_first_even_before_the_first_charge() -> None:
    # A wallet charged from the 4th only: its blocks start where May's use has reached, as the
    # usage page and a bill count them (billing.costs), not from the first charged day.
    tiered = {
        "type": "tiered",
        "tiers": [{"up_to": "30", "rate": "1"}, {"up_to": None, "rate": "3"}],
    }
    account, sp, _ = supplied(tariff=make_tariff(tiered, standing="0", tax="0"))
    hours(account, sp, MIDNIGHT - dt.timedelta(days=3), [1000] * 72)  # 72 kWh on 1-3 May
    hours(account, sp, MIDNIGHT, [1000] * 24)
    _charge()
    charge = DailyCharge.objects.get(day=DAY)
    assert charge.total == 24 * 300
    assert [line["band"] for line in charge.lines] == ["30+"]


def _export(account: Account, sp: ServicePoint, start: dt.datetime, wh: list[int]) -> None:
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=sp,
            direction="export",
            hour=start + dt.timedelta(hours=i),
            account=account,
            consumption=value,
            reading_count=4,
        )
        for i, value in enumerate(wh)
        if value
    )


def test_export_is_credited_as_an_entry_of_its_own_and_never_netted() -> None:
    account, sp, wallet = supplied(tariff=make_tariff(export_rate="4"))
    hours(account, sp, MIDNIGHT, [500] * 24)  # 12 kWh
    _export(account, sp, MIDNIGHT + dt.timedelta(hours=9), [2500] * 8)  # 20 kWh at noon
    _charge()
    charge = DailyCharge.objects.get()
    # 12 kWh x 2.5 + 10 standing = 40.00, 5 % tax = 2.00; 20 kWh x 4 = 80.00, untaxed.
    assert (charge.net, charge.tax, charge.total, charge.credit) == (4000, 200, 4200, 8000)
    assert (charge.consumption, charge.export) == (12_000, 20_000)
    entries = {e.kind: e for e in JournalEntry.objects.all()}
    assert set(entries) == {JournalEntry.Kind.CHARGE, JournalEntry.Kind.EXPORT_CREDIT}
    assert charge.entry == entries[JournalEntry.Kind.CHARGE]
    assert charge.credit_entry == entries[JournalEntry.Kind.EXPORT_CREDIT]
    assert entries[JournalEntry.Kind.EXPORT_CREDIT].memo == f"export credit {DAY}"
    for entry in entries.values():
        assert sum(entry.postings.values_list("amount", flat=True)) == 0
    wallet.refresh_from_db()
    assert wallet.balance == 8000 - 4200  # a net-credit day raises the balance
    _charge()
    assert JournalEntry.objects.count() == 2


def test_a_day_a_stopped_run_left_half_charged_is_completed_by_the_next_days_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 12: a run killed after some accounts, then the next run after local midnight,
    # left the other accounts uncharged for that day for good.
    first, first_sp, _ = supplied()
    second, second_sp, _ = supplied()
    before = DAY - dt.timedelta(days=1)
    for account, sp in ((first, first_sp), (second, second_sp)):
        hours(account, sp, MIDNIGHT - dt.timedelta(days=1), [1000] * 72)
    prepaid_charge_day(day=before, time_zone=TZ, actor=SYSTEM, as_of=NOW)
    # The run for DAY dies after its first chunk (one account).
    from billing.services import charging

    real = charging._charge_chunk
    calls: list[int] = []

    def dies_after_one(*args: object, **kwargs: object) -> None:
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(charging, "_charge_chunk", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        prepaid_charge_day(day=DAY, time_zone=TZ, actor=SYSTEM, as_of=NOW, chunk=1)
    monkeypatch.setattr(charging, "_charge_chunk", real)
    assert DailyCharge.objects.filter(day=DAY).count() == 1
    # The next day's run, after the local charge hour.
    runs = prepaid_charge_due(as_of=dt.datetime(2026, 5, 5, 23, 0, tzinfo=dt.UTC), actor=SYSTEM)
    assert [(run.day, run.charged) for run in runs] == [(DAY, 1), (DAY + dt.timedelta(days=1), 2)]
    for account in (first, second):
        days = sorted(DailyCharge.objects.filter(account=account).values_list("day", flat=True))
        assert days == [before, DAY, DAY + dt.timedelta(days=1)]
    # Run again: nothing twice.
    again = prepaid_charge_due(as_of=dt.datetime(2026, 5, 6, 0, 0, tzinfo=dt.UTC), actor=SYSTEM)
    assert [run.charged for run in again] == [0]


def test_the_catch_up_does_not_charge_days_before_an_account_was_first_charged() -> None:
    # An account that turns prepaid today pays from yesterday on, not for the week before,
    # which a bill may already cover.
    account, sp, _ = supplied()
    hours(account, sp, MIDNIGHT - dt.timedelta(days=5), [1000] * 24 * 6)
    (run,) = prepaid_charge_due(as_of=dt.datetime(2026, 5, 4, 23, 0, tzinfo=dt.UTC), actor=SYSTEM)
    assert (run.day, run.charged) == (DAY, 1)
    assert list(DailyCharge.objects.values_list("day", flat=True)) == [DAY]


# --- Runs: the hourly charge, resumed by the sweeper when its worker died (issue 12, 4b) ----


@contextlib.contextmanager
def _eager() -> Iterator[None]:
    """The sweeper's queued tasks run here, in the test's transaction."""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = eager


def _died_after_charging() -> PrepaidChargeRun:
    """A run as a SIGKILLed worker leaves it: running, one attempt used, its lock free, and
    the chunks it committed charged."""
    prepaid_charge_day(day=DAY, time_zone=TZ, actor=SYSTEM, as_of=NOW)
    return PrepaidChargeRun.objects.create(
        as_of=NOW, attempts=1, started_at=NOW, created_by_label="task:billing.charge"
    )


def test_a_charge_run_records_what_it_charged() -> None:
    account, sp, _ = supplied()
    hours(account, sp, MIDNIGHT, [1000] * 24)
    run = prepaid_charge_run(as_of=NOW, actor=SYSTEM)
    assert (run.status, run.attempts, run.charged) == (PrepaidChargeRun.Status.DONE, 1, 1)
    assert charge_runs_running() == []


def test_the_sweeper_resumes_a_run_whose_worker_died_and_it_charges_only_the_rest() -> None:
    first, first_sp, _ = supplied()
    hours(first, first_sp, MIDNIGHT, [1000] * 24)
    run = _died_after_charging()
    second, second_sp, _ = supplied()  # the chunk the dead worker never reached
    hours(second, second_sp, MIDNIGHT, [2000] * 24)
    with _eager():
        assert prepaid_charge_sweeper_task.apply().get() == 1
    run.refresh_from_db()
    assert (run.status, run.attempts, run.charged) == (PrepaidChargeRun.Status.DONE, 2, 1)
    assert sorted(DailyCharge.objects.filter(day=DAY).values_list("account_id", flat=True)) == [
        first.pk,
        second.pk,
    ]
    with _eager():
        assert prepaid_charge_sweeper_task.apply().get() == 0  # nothing left to resume
    assert prepaid_charge_run_resume(run_id=run.pk, actor=SYSTEM, as_of=NOW) == run


def test_a_run_whose_worker_is_alive_is_left_to_it() -> None:
    account, sp, _ = supplied()
    hours(account, sp, MIDNIGHT, [1000] * 24)
    run = _died_after_charging()
    db = connection.settings_dict
    # Another session holds the run's lock, as the worker running it does.
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as worker:
        worker.execute("SELECT pg_advisory_lock(%s)", [CHARGE_RUN_LOCK + run.pk])
        assert charge_run_is_locked(run_id=run.pk)
        with _eager():
            assert prepaid_charge_sweeper_task.apply().get() == 0
        assert prepaid_charge_run_resume(run_id=run.pk, actor=SYSTEM, as_of=NOW) is None
    # The server drops a closed session's advisory locks when its backend exits, a moment after
    # the client has gone: wait for that, with a generous bound.
    deadline = time.monotonic() + 60
    while charge_run_is_locked(run_id=run.pk) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not charge_run_is_locked(run_id=run.pk)


def test_a_run_whose_worker_died_in_every_attempt_ends_failed(settings: Any) -> None:
    account, sp, _ = supplied()
    hours(account, sp, MIDNIGHT, [1000] * 24)
    run = _died_after_charging()
    PrepaidChargeRun.objects.filter(pk=run.pk).update(attempts=settings.PREPAID_CHARGE_MAX_ATTEMPTS)
    resumed = prepaid_charge_run_resume(run_id=run.pk, actor=SYSTEM, as_of=NOW)
    assert resumed is not None and resumed.status == PrepaidChargeRun.Status.FAILED
    assert "never finished" in resumed.error
    assert charge_runs_running() == []
