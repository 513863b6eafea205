"""Shortage warnings: days left, thresholds by policy, crossings, escalation, idempotent runs.

The helpers at the top are shared with the notification tests and the audit scenarios.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction
from django.test import override_settings

from billing.models import (
    DailyCharge,
    ShortageWarning,
    Tariff,
    TariffVersion,
    Wallet,
    WarningPolicy,
)
from billing.services.ledger import journal_post, ledger_account_get, wallet_create
from billing.services.warnings import (
    WarningPolicyError,
    shortage_warnings_run,
    thresholds_clean,
    warning_policy_delete,
    warning_policy_save,
)
from meters.models import ServicePoint
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.notifications.models import Notification
from portal.notifications.services import notification_preference_set, notifications_send
from portal.notifications.sms import MemorySmsBackend
from portal.tenancy.models import Account, Organisation
from portal.tenancy.roles import Role
from portal.tenancy.selectors import Audience, members_to_notify
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db

# 18:00 in Taipei (the factories' accounts): outside the default quiet hours 22:00-08:00.
NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")
MEMORY_SMS = "portal.notifications.sms.MemorySmsBackend"
_n = itertools.count(1)


# --- helpers ------------------------------------------------------------------------------


def prepaid(account: Account | None = None, *, organisation: Organisation | None = None) -> Wallet:
    """A prepaid account's wallet (a new account unless one is given)."""
    return wallet_create(account=account or make_account(organisation=organisation), actor=SYSTEM)


def set_balance(wallet: Wallet, balance: int, *, at: dt.datetime = NOW) -> None:
    """Post a top-up (credit) or a charge (debit) that brings the wallet to `balance`."""
    wallet.refresh_from_db()
    diff = balance - wallet.balance
    if not diff:
        return
    clearing = ledger_account_get(kind="clearing", currency=wallet.currency, key="test")
    with transaction.atomic():
        journal_post(
            kind="topup" if diff > 0 else "charge",
            currency=wallet.currency,
            memo="test",
            idempotency_key=f"test-{next(_n)}",
            postings=[(wallet.ledger_account_id, -diff), (clearing.pk, diff)],
            effective_date=at.date(),
            created_by_label="test",
            as_of=at,
            account_id=wallet.account_id,
        )
    wallet.refresh_from_db()
    assert wallet.balance == balance


def charged(wallet: Wallet, per_day: int, *, days: int = 14, as_of: dt.datetime = NOW) -> None:
    """Daily charges of `per_day` for the `days` local days before `as_of`'s local day."""
    n = next(_n)
    sp = ServicePoint.objects.create(code=f"WSP{n}", kind="electricity", time_zone="Asia/Taipei")
    tariff = Tariff.objects.create(
        code=f"w{n}", name="t", kind="electricity", currency="TWD", quantity_unit="kWh"
    )
    version = TariffVersion.objects.create(
        tariff=tariff,
        valid_from=dt.date(2026, 1, 1),
        standing_charge=Decimal(0),
        tax_rate=Decimal(0),
        structure={"type": "flat", "rate": "1"},
    )
    today = as_of.astimezone(TAIPEI).date()
    DailyCharge.objects.bulk_create(
        DailyCharge(
            account_id=wallet.account_id,
            service_point=sp,
            day=today - dt.timedelta(days=back),
            tariff_version=version,
            consumption=1000,
            net=per_day,
            tax=0,
            total=per_day,
            created_at=as_of,
        )
        for back in range(1, days + 1)
    )


def short_wallet(
    *,
    account: Account | None = None,
    organisation: Organisation | None = None,
    per_day: int = 100_00,
    days_left: str = "2.5",
) -> Wallet:
    """A wallet charged `per_day` for 14 days whose balance lasts `days_left` days."""
    wallet = prepaid(account, organisation=organisation)
    charged(wallet, per_day)
    set_balance(wallet, int(Decimal(days_left) * per_day))
    return wallet


def run(at: dt.datetime = NOW) -> object:
    return shortage_warnings_run(as_of=at, actor=SYSTEM)


def warned(account: Account, **filters: object) -> list[tuple[int, int, int]]:
    """(threshold, crossing, level) of the account's warnings, in order."""
    return list(
        ShortageWarning.objects.filter(account=account, **filters)
        .order_by("crossing", "level", "-threshold")
        .values_list("threshold", "crossing", "level")
    )


def told(account: Account, **filters: object) -> set[str]:
    return set(
        Notification.objects.filter(account=account, **filters).values_list(
            "user__email", flat=True
        )
    )


def warning_keys(**filters: object) -> list[str]:
    """The notifications' keys of the warnings matching `filters`."""
    return [
        f"warning:{pk}"
        for pk in ShortageWarning.objects.filter(**filters).values_list("pk", flat=True)
    ]


def warning_of(notification: Notification) -> ShortageWarning:
    return ShortageWarning.objects.get(pk=int(notification.key.split(":")[1]))


def owner(account: Account, email: str | None = None) -> User:
    user = make_user(email)
    make_membership(user, Role.OWNER, account=account)
    return user


# --- days left and thresholds -------------------------------------------------------------


def test_days_left_is_balance_over_the_average_of_the_last_14_days() -> None:
    wallet = short_wallet(days_left="2.57")
    owner(wallet.account)
    run()
    rows = ShortageWarning.objects.filter(account=wallet.account)
    assert {w.threshold for w in rows} == {7, 3}
    assert {w.days_left for w in rows} == {Decimal("2.5")}  # rounded down
    assert {w.balance for w in rows} == {257_00}


def test_a_new_account_is_averaged_over_the_days_it_was_charged() -> None:
    wallet = prepaid()
    charged(wallet, 100_00, days=2)
    set_balance(wallet, 500_00)  # 5 days at 100 a day, not 35 days at 200/14
    run()
    assert warned(wallet.account) == [(7, 0, 0)]
    assert ShortageWarning.objects.get(account=wallet.account).days_left == Decimal("5.0")


def test_without_charges_only_the_empty_balance_warns() -> None:
    wallet = prepaid()
    set_balance(wallet, 1)
    run()
    assert warned(wallet.account) == []
    set_balance(wallet, 0)
    run(NOW + dt.timedelta(hours=1))
    # Zero days left is under every threshold: all are recorded, only "empty" is sent.
    assert warned(wallet.account) == [(7, 0, 0), (3, 0, 0), (1, 0, 0), (0, 0, 0)]
    assert {w.days_left for w in ShortageWarning.objects.filter(account=wallet.account)} == {0}


def test_several_thresholds_crossed_at_once_send_only_the_most_urgent() -> None:
    wallet = short_wallet(days_left="0.5")
    user = owner(wallet.account)
    run()
    assert warned(wallet.account) == [(7, 0, 0), (3, 0, 0), (1, 0, 0)]
    notification = Notification.objects.get(user=user)
    assert warning_of(notification).threshold == 1


def test_thresholds_come_from_account_then_organisation_then_ancestor_then_default(
    world: World,
) -> None:
    # Every account has 8 days of credit left.
    household = short_wallet(days_left="8")  # default 7, 3, 1, 0: not yet
    in_sub2 = short_wallet(organisation=world.sub2, days_left="8")  # group's policy: 10
    in_sub1 = short_wallet(organisation=world.sub1, days_left="8")  # sub1's policy: 9
    own = short_wallet(organisation=world.sub1, days_left="8")  # its own policy: 4
    warning_policy_save(organisation=world.group, thresholds=[10, 2], actor=SYSTEM)
    warning_policy_save(organisation=world.sub1, thresholds=[9], actor=SYSTEM)
    warning_policy_save(account=own.account, thresholds=[4, 1], actor=SYSTEM)
    run()
    assert warned(household.account) == []
    assert warned(in_sub2.account) == [(10, 0, 0)]
    assert warned(in_sub1.account) == [(9, 0, 0)]
    assert warned(own.account) == []


def test_thresholds_are_cleaned_and_zero_is_always_kept() -> None:
    assert thresholds_clean([3, 7, 3]) == [7, 3, 0]
    with pytest.raises(WarningPolicyError):
        thresholds_clean([-1])
    with pytest.raises(WarningPolicyError):
        thresholds_clean([400])
    with pytest.raises(WarningPolicyError):
        thresholds_clean([1, 2, 3, 4, 5, 6])
    with pytest.raises(WarningPolicyError):
        warning_policy_save(thresholds=[3], actor=SYSTEM)


def test_policy_changes_are_audited(world: World) -> None:
    policy = warning_policy_save(organisation=world.sub1, thresholds=[5], actor=SYSTEM)
    policy = warning_policy_save(organisation=world.sub1, thresholds=[6], actor=SYSTEM)
    assert policy.thresholds == [6, 0]
    warning_policy_delete(policy=policy, actor=SYSTEM)
    assert not WarningPolicy.objects.exists()
    events = list(
        AuditLogEntry.objects.filter(organisation=world.sub1)
        .order_by("id")
        .values_list("event_type", flat=True)
    )
    assert events[-3:] == [
        AuditEvent.WARNING_POLICY_SAVED,
        AuditEvent.WARNING_POLICY_SAVED,
        AuditEvent.WARNING_POLICY_DELETED,
    ]


# --- idempotency and crossings ------------------------------------------------------------


@override_settings(SMS_BACKEND=MEMORY_SMS)
def test_rerunning_the_warning_task_for_the_same_day_creates_nothing_new() -> None:
    MemorySmsBackend.outbox.clear()
    wallet = short_wallet(days_left="2.5")
    user = owner(wallet.account)
    notification_preference_set(
        user=user, topic="shortage", email=True, sms=True, phone="+886912345678", actor=SYSTEM
    )
    run()
    notifications_send(as_of=NOW)
    counts = (ShortageWarning.objects.count(), Notification.objects.count())
    audits = AuditLogEntry.objects.filter(event_type=AuditEvent.SHORTAGE_WARNINGS_RUN).count()
    assert counts == (2, 2)  # 7 and 3 days; email and SMS for the 3-day warning
    assert (len(mail.outbox), len(MemorySmsBackend.outbox)) == (1, 1)

    for hours in (0, 1, 6, 13):  # the same local day (18:00 to 07:00)
        result = run(NOW + dt.timedelta(hours=hours))
        notifications_send(as_of=NOW + dt.timedelta(hours=hours, minutes=1))
        assert result == type(result)(0, 0, 0, 0)  # type: ignore[call-arg]

    assert (ShortageWarning.objects.count(), Notification.objects.count()) == counts
    assert (len(mail.outbox), len(MemorySmsBackend.outbox)) == (1, 1)
    assert (
        AuditLogEntry.objects.filter(event_type=AuditEvent.SHORTAGE_WARNINGS_RUN).count() == audits
    )


def test_a_top_up_above_the_thresholds_and_a_new_fall_warn_again() -> None:
    wallet = short_wallet(days_left="2.5")
    user = owner(wallet.account)
    run()
    assert warned(wallet.account) == [(7, 0, 0), (3, 0, 0)]

    set_balance(wallet, 20 * 100_00, at=NOW + dt.timedelta(hours=1))  # 20 days: recovered
    run(NOW + dt.timedelta(hours=2))
    assert warned(wallet.account) == [(7, 0, 0), (3, 0, 0)]

    set_balance(wallet, 6 * 100_00, at=NOW + dt.timedelta(hours=3))
    run(NOW + dt.timedelta(hours=4))
    assert warned(wallet.account) == [(7, 0, 0), (3, 0, 0), (7, 1, 0)]
    assert Notification.objects.filter(user=user, key__in=warning_keys(crossing=1)).count() == 1


def test_a_top_up_and_a_fall_between_two_runs_still_start_a_new_crossing() -> None:
    wallet = short_wallet(days_left="2.5")
    run()
    set_balance(wallet, 30 * 100_00, at=NOW + dt.timedelta(hours=1))
    set_balance(wallet, 2 * 100_00, at=NOW + dt.timedelta(hours=2))
    run(NOW + dt.timedelta(hours=3))
    assert warned(wallet.account, crossing=1) == [(7, 1, 0), (3, 1, 0)]


def test_a_small_top_up_that_stays_under_the_thresholds_does_not_warn_again() -> None:
    wallet = short_wallet(days_left="2.5")
    run()
    set_balance(wallet, 6 * 100_00, at=NOW + dt.timedelta(hours=1))  # still under 7 days
    run(NOW + dt.timedelta(hours=2))
    assert warned(wallet.account) == [(7, 0, 0), (3, 0, 0)]


def test_the_next_threshold_of_the_same_fall_warns_in_the_same_crossing() -> None:
    wallet = short_wallet(days_left="5")
    run()
    set_balance(wallet, 2 * 100_00, at=NOW + dt.timedelta(hours=1))
    run(NOW + dt.timedelta(hours=2))
    assert warned(wallet.account) == [(7, 0, 0), (3, 0, 0)]


# --- recipients and escalation ------------------------------------------------------------


def test_level_0_goes_to_members_who_can_pay_never_to_viewers(world: World) -> None:
    short_wallet(account=world.account_a)
    run()
    # alice owner, pat payer, max manager; bob only views.
    assert told(world.account_a) == {"alice@example.com", "pat@example.com", "max@example.com"}


def test_a_subsidiary_account_tells_its_own_managers_first(world: World) -> None:
    short_wallet(account=world.acc1)
    run()
    assert told(world.acc1) == {"s1m@example.com"}
    assert members_to_notify(account_id=world.acc1.pk, audience=Audience.ACCOUNT) == [
        (world.sub1_manager.pk, Role.MANAGER)
    ]


def test_the_group_manager_gets_the_escalation_and_the_sibling_manager_does_not(
    world: World,
) -> None:
    short_wallet(account=world.acc1)
    run()
    run(NOW + dt.timedelta(hours=23))
    assert told(world.acc1, key__in=warning_keys(level=1)) == set()

    run(NOW + dt.timedelta(hours=24))
    # Both thresholds are escalated and recorded; only the most urgent is sent...
    assert warned(world.acc1, level=1) == [(7, 0, 1), (3, 0, 1)]
    assert told(world.acc1, key__in=warning_keys(level=1)) == {"gm@example.com"}
    assert warning_of(Notification.objects.get(user=world.group_manager)).threshold == 3
    assert "s2m@example.com" not in told(world.acc1)
    # ...and its first warning is not sent again.
    assert Notification.objects.filter(user=world.sub1_manager).count() == 1

    notifications_send(as_of=NOW + dt.timedelta(hours=24))
    assert sorted(m.to[0] for m in mail.outbox) == ["gm@example.com", "s1m@example.com"]
    escalated = next(m for m in mail.outbox if m.to == ["gm@example.com"])
    assert world.acc1.number in escalated.body
    assert "one level up" in escalated.body

    run(NOW + dt.timedelta(hours=48))  # still short: the escalation is not repeated
    assert warned(world.acc1, level=1) == [(7, 0, 1), (3, 0, 1)]
    assert Notification.objects.filter(account=world.acc1).count() == 2


def test_a_top_up_within_24_hours_stops_the_escalation(world: World) -> None:
    wallet = short_wallet(account=world.acc1)
    run()
    set_balance(wallet, 30 * 100_00, at=NOW + dt.timedelta(hours=5))
    run(NOW + dt.timedelta(hours=25))
    assert warned(world.acc1, level=1) == []


def test_accounts_without_an_organisation_above_do_not_escalate(world: World) -> None:
    short_wallet(account=world.account_a)
    top = short_wallet(organisation=world.group)
    run()
    run(NOW + dt.timedelta(hours=25))
    assert warned(world.account_a, level=1) == []
    assert warned(top.account, level=1) == []


def test_closed_and_postpaid_accounts_are_not_warned() -> None:
    postpaid = make_account(payment_mode="postpaid")
    wallet = short_wallet()
    Account.objects.filter(pk=wallet.account_id).update(closed_at=NOW)
    run()
    assert not ShortageWarning.objects.filter(account__in=[postpaid, wallet.account]).exists()


def test_a_run_that_warns_records_one_audit_entry() -> None:
    short_wallet()
    short_wallet()
    before = AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    result = run()
    assert result.accounts == 2  # type: ignore[attr-defined]
    entries = list(AuditLogEntry.objects.filter(id__gt=before).order_by("id"))
    assert [e.event_type for e in entries] == [AuditEvent.SHORTAGE_WARNINGS_RUN]
    assert entries[0].data["warnings"] == 4
