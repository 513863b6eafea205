"""Postpaid bills end to end: priced from the rollups, run idempotently, numbered, voided."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

from billing.exceptions import BillError
from billing.models import (
    Bill,
    BillLine,
    BillRun,
    BillSequence,
    JournalEntry,
    Posting,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from billing.services.bill_numbers import bill_payment_reference, bill_payment_reference_valid
from billing.services.bills import (
    bill_create,
    bill_issue,
    bill_mark_paid,
    bill_run_execute,
    bill_void,
)
from meters.models import RollupDaily, RollupHourly, ServicePoint, Supply
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Account, Organisation
from tests.factories import SYSTEM, make_account, make_organisation

NOW = dt.datetime(2026, 4, 2, 3, 0, tzinfo=dt.UTC)
MARCH = dt.date(2026, 3, 1)
TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")
_n = itertools.count(1)


def make_postpaid_tariff(
    versions: list[tuple[dt.date, dt.date | None, dict[str, Any], str]] | None = None,
    *,
    name: str = "Residential",
    tax: str = "0.05",
) -> Tariff:
    """A TWD electricity tariff; versions are (valid_from, valid_to, structure, standing)."""
    tariff = Tariff.objects.create(
        code=f"bt{next(_n)}", name=name, kind="electricity", currency="TWD", quantity_unit="kWh"
    )
    for valid_from, valid_to, structure, standing in versions or [
        (dt.date(2026, 1, 1), None, {"type": "flat", "rate": "2.5"}, "10")
    ]:
        TariffVersion.objects.create(
            tariff=tariff,
            valid_from=valid_from,
            valid_to=valid_to,
            standing_charge=Decimal(standing),
            tax_rate=Decimal(tax),
            structure=structure,
        )
    return tariff


def postpaid(
    name: str | None = None,
    *,
    organisation: Organisation | None = None,
    tariff: Tariff | None = None,
) -> tuple[Account, ServicePoint]:
    """A postpaid account (Asia/Taipei, TWD) with a service point on a tariff since January."""
    account = make_account(name, organisation=organisation, payment_mode="postpaid")
    sp = ServicePoint.objects.create(
        code=f"BSP{next(_n)}", kind="electricity", time_zone=account.time_zone
    )
    TariffAssignment.objects.create(
        account=account,
        service_point=sp,
        tariff=tariff or make_postpaid_tariff(),
        valid_from=dt.date(2026, 1, 1),
    )
    # The supply that holds the service point pays its standing charges (billing.costs).
    Supply.objects.create(
        account=account,
        service_point=sp,
        start=dt.datetime(2026, 1, 1, tzinfo=TAIPEI).astimezone(dt.UTC),
    )
    return account, sp


def local_hours(
    account: Account,
    sp: ServicePoint,
    first_day: dt.date,
    days: int,
    wh: int = 1000,
    *,
    estimated: int = 0,
) -> None:
    """`wh` in every local hour of `days` days from `first_day`, as rollups hold them (UTC)."""
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=TAIPEI).astimezone(dt.UTC)
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=sp,
            direction="import",
            hour=start + dt.timedelta(hours=i),
            account=account,
            consumption=wh,
            estimated=estimated,
            reading_count=4,
        )
        for i in range(days * 24)
    )
    # The daily rollups the import derives from them (the service point's local days).
    RollupDaily.objects.bulk_create(
        RollupDaily(
            service_point=sp,
            direction="import",
            day=first_day + dt.timedelta(days=d),
            account=account,
            consumption=wh * 24,
            estimated=estimated * 24,
            reading_count=96,
            hours=24,
        )
        for d in range(days)
    )


def _lines(bill: Bill) -> list[tuple[str, str, Decimal, Decimal, int]]:
    return [
        (line.kind, line.band, line.quantity, line.unit_price, line.amount)
        for line in bill.lines.order_by("position")
    ]


def _ledger_sum() -> int:
    return Posting.objects.aggregate(s=Sum("amount"))["s"] or 0


@pytest.mark.django_db
def test_a_month_with_a_mid_period_tariff_change_is_priced_from_the_rollups() -> None:
    tiered = {
        "type": "tiered",
        "tiers": [{"up_to": "100", "rate": "3"}, {"up_to": None, "rate": "4"}],
    }
    tariff = make_postpaid_tariff(
        [
            (dt.date(2026, 1, 1), dt.date(2026, 3, 15), {"type": "flat", "rate": "2.5"}, "10"),
            (dt.date(2026, 3, 15), None, tiered, "12"),
        ]
    )
    account, sp = postpaid(tariff=tariff)
    # February's last day and April's first are outside the period and must not count.
    local_hours(account, sp, dt.date(2026, 2, 28), 33)

    run = bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)

    bill = Bill.objects.get(account=account)
    assert (run.status, run.bills, bill.run_id) == (BillRun.Status.DONE, 1, run.pk)
    # 14 days x 24 kWh at 2.50 + 14 days x 10; then 17 days x 24 kWh: the month's tier count
    # (336 kWh by the 15th) is not reset by the new version, so all of it is above 100 kWh.
    assert _lines(bill) == [
        ("consumption", "", Decimal("336.000000"), Decimal("2.500000"), 840_00),
        ("consumption", "100+", Decimal("408.000000"), Decimal("4.000000"), 1632_00),
        ("standing", "", Decimal("14.000000"), Decimal("10.000000"), 140_00),
        ("standing", "", Decimal("17.000000"), Decimal("12.000000"), 204_00),
        ("tax", "", Decimal("2816.000000"), Decimal("0.050000"), 140_80),
    ]
    assert (bill.subtotal, bill.tax, bill.total) == (2816_00, 140_80, 2956_80)
    assert bill.total == sum(line.amount for line in bill.lines.all())
    assert (bill.status, bill.has_estimates) == (Bill.Status.ISSUED, False)
    # A household's bill: the utility's own series, issued in 2026.
    assert (bill.sequence_number, bill.number) == (1, "RES-2026-000001")
    assert bill.period_end == dt.date(2026, 4, 1)
    assert _ledger_sum() == 0


@pytest.mark.django_db
def test_a_time_of_use_bill_reads_the_hours() -> None:
    tou = {
        "type": "tou",
        "bands": [
            {"name": "peak", "days": "all", "from": 8, "to": 20, "rate": "4"},
            {"name": "off-peak", "days": "all", "from": 20, "to": 8, "rate": "1"},
        ],
    }
    account, sp = postpaid(
        tariff=make_postpaid_tariff([(dt.date(2026, 1, 1), None, tou, "0")], tax="0")
    )
    local_hours(account, sp, MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    bill = Bill.objects.get(account=account)
    assert [(k, band, q) for k, band, q, _p, _a in _lines(bill)][:2] == [
        ("consumption", "off-peak", Decimal("372.000000")),
        ("consumption", "peak", Decimal("372.000000")),
    ]
    assert bill.total == 372 * 4_00 + 372 * 1_00


@pytest.mark.django_db
def test_a_time_of_use_month_summed_per_slot_prices_like_hour_by_hour() -> None:
    from billing.pricing import Segment, price
    from billing.selectors import hourly_usage

    tou = {
        "type": "tou",
        "bands": [
            {"name": "peak", "days": "weekdays", "from": 9, "to": 21, "rate": "4.123457"},
            {"name": "off-peak", "days": "weekdays", "from": 21, "to": 9, "rate": "1.5"},
            {"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "1.2"},
        ],
    }
    account, sp = postpaid(
        tariff=make_postpaid_tariff([(dt.date(2026, 1, 1), None, tou, "3.3")], tax="0.05")
    )
    start = dt.datetime.combine(MARCH, dt.time(), tzinfo=TAIPEI).astimezone(dt.UTC)
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=sp,
            direction="import",
            hour=start + dt.timedelta(hours=i),
            account=account,
            consumption=(i * 7919) % 2311,
            estimated=(i % 5 == 0) * 10,
            reading_count=4,
        )
        for i in range(31 * 24)
    )
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    bill = Bill.objects.get(account=account)
    end = dt.datetime.combine(dt.date(2026, 4, 1), dt.time(), tzinfo=TAIPEI).astimezone(dt.UTC)
    hours = hourly_usage(account_ids=[account.pk], start=start, end=end, time_zone="Asia/Taipei")[
        (account.pk, sp.pk)
    ]
    version = TariffVersion.objects.get()
    expected = price([Segment(version, 31, hours)], currency="TWD", unit="kWh")
    assert bill.total == expected.total
    assert bill.has_estimates


@pytest.mark.django_db
def test_rerunning_the_bill_run_creates_nothing_new() -> None:
    group = make_organisation("Group")
    accounts = [postpaid(organisation=group)[0] for _ in range(3)] + [postpaid()[0]]
    for account in accounts:
        sp = ServicePoint.objects.get(
            pk=TariffAssignment.objects.get(account=account).service_point_id
        )
        local_hours(account, sp, MARCH, 31)
    make_account("prepaid, not billed")
    no_tariff = make_account("postpaid without a tariff", payment_mode="postpaid")

    def state() -> tuple[Any, ...]:
        return (
            list(
                Bill.objects.order_by("pk").values_list(
                    "pk", "organisation_id", "sequence_number", "number"
                )
            ),
            BillLine.objects.count(),
            list(BillSequence.objects.order_by("pk").values_list("organisation_id", "next_number")),
            JournalEntry.objects.count(),
            Posting.objects.count(),
            AuditLogEntry.objects.count(),
        )

    run = bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW, chunk_size=2)
    first = state()
    again = bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW + dt.timedelta(hours=1))

    assert state() == first
    assert again.pk == run.pk and (again.bills, again.skipped) == (4, 1)
    assert not Bill.objects.filter(account=no_tariff).exists()
    # Numbered per organisation, from 1, without gaps; households have their own sequence.
    assert sorted(n for _, org, n, _ in first[0] if org == group.pk) == [1, 2, 3]
    assert [n for _, org, n, _ in first[0] if org is None] == [1]
    # Printed with the issuer's prefix (from the name "Group") or the households' one.
    assert sorted(p for _, org, _, p in first[0] if org == group.pk) == [
        "GRO-2026-000001",
        "GRO-2026-000002",
        "GRO-2026-000003",
    ]
    assert [p for _, org, _, p in first[0] if org is None] == ["RES-2026-000001"]
    assert first[3] == 4  # one ledger entry per bill
    # One audit entry for the whole run, not one per bill.
    entries = AuditLogEntry.objects.filter(event_type=340)
    assert [e.data["bills"] for e in entries] == [4]


@pytest.mark.django_db
def test_an_interrupted_run_resumes_without_billing_anyone_twice() -> None:
    done, sp_done = postpaid()
    left, sp_left = postpaid()
    local_hours(done, sp_done, MARCH, 31)
    local_hours(left, sp_left, MARCH, 31)
    # A run that died after its first chunk: the run row exists, one account is billed.
    bill_issue(
        bill=bill_create(account=done, period_start=MARCH, actor=SYSTEM, as_of=NOW),
        actor=SYSTEM,
        as_of=NOW,
    )
    BillRun.objects.create(
        period_start=MARCH, period_end=dt.date(2026, 4, 1), started_at=NOW, created_by_label="t"
    )
    run = bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    assert Bill.objects.filter(period_start=MARCH).count() == 2
    assert list(Bill.objects.filter(run=run).values_list("account_id", flat=True)) == [left.pk]
    numbers = Bill.objects.order_by("sequence_number").values_list("sequence_number", flat=True)
    assert list(numbers) == [1, 2]


@pytest.mark.django_db
def test_estimated_consumption_is_marked_on_the_bill() -> None:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 10)
    local_hours(account, sp, dt.date(2026, 3, 11), 1, estimated=1000)  # a gap filled in
    local_hours(account, sp, dt.date(2026, 3, 12), 20)
    bill = bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW)
    consumption = bill.lines.get(kind=BillLine.Kind.CONSUMPTION)
    assert consumption.estimated and bill.has_estimates
    assert not bill.lines.get(kind=BillLine.Kind.STANDING).estimated


@pytest.mark.django_db
def test_adjustments_are_lines_of_their_own_and_not_taxed() -> None:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 31)
    bill = bill_create(
        account=account,
        period_start=MARCH,
        actor=SYSTEM,
        as_of=NOW,
        adjustments=[("goodwill credit", -50_00)],
    )
    kinds = [line.kind for line in bill.lines.order_by("position")]
    assert kinds == ["consumption", "standing", "adjustment", "tax"]
    # 744 kWh x 2.50 + 31 x 10 = 2170.00; tax 5 % of that only.
    assert (bill.subtotal, bill.tax) == (2170_00 - 50_00, 108_50)
    with pytest.raises(BillError):
        bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW)


@pytest.mark.django_db
def test_void_keeps_the_bill_and_issues_a_credit_note_with_negated_lines() -> None:
    group = make_organisation("Group")
    account, sp = postpaid(organisation=group)
    local_hours(account, sp, MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    bill = Bill.objects.get(account=account)
    with pytest.raises(BillError):
        bill_void(bill=bill, reason="  ", actor=SYSTEM, as_of=NOW)

    note = bill_void(bill=bill, reason="meter misread", actor=SYSTEM, as_of=NOW)

    bill.refresh_from_db()
    assert (bill.status, bill.void_reason) == (Bill.Status.VOID, "meter misread")
    assert bill.number == "GRO-2026-000001"
    assert bill.lines.count() == note.lines.count() == 3
    # The next number of the same series, with a payment reference of its own.
    assert (note.credit_note_for_id, note.number, note.status) == (
        bill.pk,
        "GRO-2026-000002",
        "issued",
    )
    assert note.payment_reference and note.payment_reference != bill.payment_reference
    assert (note.total, note.tax, note.due_at) == (-bill.total, -bill.tax, None)
    assert [(k, b, -q, p, -a) for k, b, q, p, a in _lines(note)] == _lines(bill)
    # The reversal brings the customer's receivable back to zero; the ledger still balances.
    receivable = Posting.objects.filter(ledger_account__code=f"receivable:{account.pk}:TWD")
    assert receivable.aggregate(s=Sum("amount"))["s"] == 0
    assert _ledger_sum() == 0
    with pytest.raises(BillError):
        bill_void(bill=bill, reason="again", actor=SYSTEM, as_of=NOW)
    with pytest.raises(BillError):
        bill_void(bill=note, reason="a credit note", actor=SYSTEM, as_of=NOW)


@pytest.mark.django_db
def test_a_payment_clears_the_receivable() -> None:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 31)
    bill = bill_issue(
        bill=bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW),
        actor=SYSTEM,
        as_of=NOW,
    )
    assert bill.due_at == NOW + dt.timedelta(days=14)
    with pytest.raises(BillError):
        bill_issue(bill=bill, actor=SYSTEM, as_of=NOW)
    paid = bill_mark_paid(bill=bill, actor=SYSTEM, as_of=NOW)
    assert paid.status == Bill.Status.PAID
    receivable = Posting.objects.filter(ledger_account__code=f"receivable:{account.pk}:TWD")
    assert receivable.aggregate(s=Sum("amount"))["s"] == 0
    assert JournalEntry.objects.filter(kind="bill_payment").count() == 1
    with pytest.raises(BillError):
        bill_mark_paid(bill=bill, actor=SYSTEM, as_of=NOW)


@pytest.mark.django_db
def test_only_postpaid_accounts_and_whole_months_are_billed() -> None:
    with pytest.raises(BillError):
        bill_create(account=make_account(), period_start=MARCH, actor=SYSTEM, as_of=NOW)
    with pytest.raises(BillError):
        bill_run_execute(period_start=dt.date(2026, 3, 2), actor=SYSTEM, as_of=NOW)


# --- Numbers under concurrency ---------------------------------------------------------------


def _drafts(n: int, organisation: Organisation | None) -> list[Bill]:
    bills = []
    for _ in range(n):
        account, sp = postpaid(organisation=organisation)
        local_hours(account, sp, MARCH, 2)
        bills.append(bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW))
    return bills


def _lock_waiters_appear(deadline: int = 30) -> bool:
    """Whether a session of this test database comes to wait for a lock (polled until then)."""
    stop = time.monotonic() + deadline
    with connection.cursor() as cursor:
        while time.monotonic() < stop:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.01)
    return False


def test_concurrent_issues_get_consecutive_numbers_and_a_rollback_leaves_no_gap(
    transactional_db: None,
) -> None:
    group = make_organisation("Group")
    first, second, third = _drafts(3, group)
    household = _drafts(1, None)[0]
    holding = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def issue_and_hold() -> None:
        try:
            with transaction.atomic():
                bill_issue(bill=first, actor=SYSTEM, as_of=NOW)
                holding.set()
                release.wait(10)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    def issue() -> None:
        try:
            bill_issue(bill=second, actor=SYSTEM, as_of=NOW)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    a = threading.Thread(target=issue_and_hold)
    a.start()
    assert holding.wait(10)
    b = threading.Thread(target=issue)
    b.start()
    # b waits for a's lock (its issuer's series), as PostgreSQL reports: not guessed from time.
    assert _lock_waiters_appear()
    assert b.is_alive()
    release.set()
    a.join(10)
    b.join(10)
    assert not errors

    class Boom(Exception):
        pass

    def issue_then_fail() -> None:
        with transaction.atomic():
            bill_issue(bill=third, actor=SYSTEM, as_of=NOW)
            raise Boom

    with pytest.raises(Boom):
        issue_then_fail()
    third.refresh_from_db()
    assert (third.status, third.number, third.sequence_number) == (Bill.Status.DRAFT, "", None)
    bill_issue(bill=third, actor=SYSTEM, as_of=NOW)
    bill_issue(bill=household, actor=SYSTEM, as_of=NOW)

    numbers = dict(Bill.objects.values_list("pk", "sequence_number"))
    assert [numbers[b.pk] for b in (first, second, third)] == [1, 2, 3]
    assert numbers[household.pk] == 1
    printed = dict(Bill.objects.values_list("pk", "number"))
    assert [printed[b.pk] for b in (first, second, third)] == [
        f"GRO-2026-00000{n}" for n in (1, 2, 3)
    ]
    assert printed[household.pk] == "RES-2026-000001"


@pytest.mark.django_db
def test_each_issuer_prints_its_own_prefix_and_two_never_share_one(settings: Any) -> None:
    settings.BILLING_HOUSEHOLD_BILL_PREFIX = "HR"  # taken by the utility's own series first
    harbour = make_organisation("Harbour Residential")
    hillside = make_organisation("Hillside Retail")
    acme = make_organisation("Acme")
    accounts = [
        postpaid(organisation=organisation)[0] for organisation in (harbour, hillside, acme)
    ] + [postpaid()[0]]
    for account in accounts:
        local_hours(account, ServicePoint.objects.get(pk=_point(account)), MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    printed = [Bill.objects.get(account=account).number for account in accounts]
    # Initials, then a number after a prefix already taken; a one-word name's first letters.
    assert printed == ["HR2-2026-000001", "HR3-2026-000001", "ACM-2026-000001", "HR-2026-000001"]
    prefixes = dict(BillSequence.objects.values_list("organisation_id", "prefix"))
    assert prefixes == {harbour.pk: "HR2", hillside.pk: "HR3", acme.pk: "ACM", None: ""}
    # A prefix changed later prints on later bills; issued numbers never change; two issuers
    # never share a prefix.
    BillSequence.objects.filter(organisation=hillside).update(prefix="HILL")
    with pytest.raises(IntegrityError), transaction.atomic():
        BillSequence.objects.filter(organisation=acme).update(prefix="HILL")
    # Issued in January: the year of issue in the account's zone (31 Dec 17:00 UTC is 1 Jan).
    april = dt.date(2026, 4, 1)
    for account in accounts:
        local_hours(account, ServicePoint.objects.get(pk=_point(account)), april, 30)
    bill_run_execute(
        period_start=april, actor=SYSTEM, as_of=dt.datetime(2026, 12, 31, 17, tzinfo=dt.UTC)
    )
    later = Bill.objects.get(account=accounts[1], period_start=april)
    assert later.number == "HILL-2027-000002"
    assert Bill.objects.get(account=accounts[1], period_start=MARCH).number == "HR3-2026-000001"


def _point(account: Account) -> int:
    return TariffAssignment.objects.get(account=account).service_point_id


def test_the_payment_reference_catches_every_mistyped_character() -> None:
    reference = bill_payment_reference(account_number="HR-0202", bill_number="HR-2026-000123")
    assert reference[:-1] == "HR0202HR2026000123"
    assert bill_payment_reference_valid(reference)
    assert bill_payment_reference_valid(" ".join(reference[i : i + 4] for i in range(0, 19, 4)))
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for i, char in enumerate(reference):
        for other in alphabet.replace(char, ""):
            typo = reference[:i] + other + reference[i + 1 :]
            assert not bill_payment_reference_valid(typo), typo
    swaps = [
        reference[:i] + reference[i + 1] + reference[i] + reference[i + 2 :]
        for i in range(len(reference) - 1)
        if reference[i] != reference[i + 1]
    ]
    assert sum(bill_payment_reference_valid(swap) for swap in swaps) == 0
    assert not bill_payment_reference_valid("") and not bill_payment_reference_valid("HR-02")


@pytest.mark.django_db
def test_a_service_point_in_another_time_zone_is_billed_by_the_accounts_local_days() -> None:
    account, sp = postpaid()
    sp.time_zone = "UTC"
    sp.save(update_fields=["time_zone"])
    local_hours(account, sp, dt.date(2026, 2, 28), 33)
    RollupDaily.objects.filter(service_point=sp).delete()  # UTC days: not the account's
    bill = bill_create(account=account, period_start=MARCH, actor=SYSTEM, as_of=NOW)
    assert bill.lines.get(kind=BillLine.Kind.CONSUMPTION).quantity == 31 * 24
