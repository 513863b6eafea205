"""Notifications: preferences, quiet hours, the sender's statuses, and bill notices."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.core import mail
from django.test import override_settings

from billing.models import Bill
from billing.services.warnings import bill_notices_queue, shortage_warnings_run
from portal.audit.actors import UserActor
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.notifications.models import Notification
from portal.notifications.services import (
    NotificationError,
    notification_preference_set,
    notifications_send,
)
from portal.notifications.sms import MemorySmsBackend, Sms, SmsError
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from tests.billing.helpers import bill_numbers
from tests.billing.test_warnings import MEMORY_SMS, NOW, owner, short_wallet
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
_numbers = itertools.count(9001)


class FailingSmsBackend:
    def send(self, message: Sms) -> str:
        raise SmsError("gateway answered 503: try later")


@pytest.fixture(autouse=True)
def _memory_sms() -> object:
    MemorySmsBackend.outbox.clear()
    with override_settings(SMS_BACKEND=MEMORY_SMS):
        yield


def _statuses(**filters: object) -> list[tuple[str, str, str]]:
    return sorted(
        Notification.objects.filter(**filters).values_list("user__email", "channel", "status")
    )


# --- preferences --------------------------------------------------------------------------


def test_email_off_and_sms_on_sends_only_a_text() -> None:
    wallet = short_wallet()
    user = owner(wallet.account, "texts@example.com")
    notification_preference_set(
        user=user, topic="shortage", email=False, sms=True, phone="+886 912-345-678", actor=SYSTEM
    )
    shortage_warnings_run(as_of=NOW, actor=SYSTEM)
    assert _statuses() == [("texts@example.com", "sms", "queued")]

    result = notifications_send(as_of=NOW)
    assert (result.sent, result.failed) == (1, 0)
    assert mail.outbox == []
    [sms] = MemorySmsBackend.outbox
    assert sms.to == "+886912345678"
    assert wallet.account.number in sms.body
    assert "2.5 days" in sms.body
    notification = Notification.objects.get()
    assert (notification.status, notification.sent_at) == ("sent", NOW)


def test_a_member_with_every_channel_off_is_recorded_as_suppressed() -> None:
    wallet = short_wallet()
    user = owner(wallet.account, "quiet@example.com")
    other = owner(wallet.account, "other@example.com")
    notification_preference_set(user=user, topic="shortage", email=False, sms=False, actor=SYSTEM)
    # A preference for another topic does not apply to low-credit warnings.
    notification_preference_set(
        user=other, topic="bill_issued", email=False, sms=False, actor=SYSTEM
    )
    shortage_warnings_run(as_of=NOW, actor=SYSTEM)
    assert _statuses() == [
        ("other@example.com", "email", "queued"),
        ("quiet@example.com", "email", "suppressed"),
    ]
    notifications_send(as_of=NOW)
    assert [m.to for m in mail.outbox] == [["other@example.com"]]
    assert _statuses(user=user) == [("quiet@example.com", "email", "suppressed")]


def test_a_preference_change_is_audited_with_the_member_as_actor() -> None:
    user = make_user("me@example.com")
    pref = notification_preference_set(
        user=user,
        topic="shortage",
        email=True,
        sms=True,
        phone="+85291234567",
        quiet_start=dt.time(23),
        quiet_end=dt.time(7),
        actor=UserActor(user=user),
    )
    assert (pref.sms, pref.phone) == (True, "+85291234567")
    entry = AuditLogEntry.objects.filter(event_type=AuditEvent.NOTIFICATION_PREFERENCE_SAVED).get()
    assert entry.actor_id == user.pk
    assert entry.data["sms"] == {"before": False, "after": True}
    assert entry.data["quiet"] == {"before": None, "after": "23:00-07:00"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"topic": "weather"}, "topic"),
        ({"sms": True}, "mobile number"),
        ({"sms": True, "phone": "0912345678"}, "international"),
        ({"quiet_start": dt.time(22)}, "both ends"),
    ],
)
def test_invalid_preferences_are_refused(changes: dict[str, object], message: str) -> None:
    user = make_user()
    arguments: dict[str, object] = {"topic": "shortage", "email": True, "sms": False, **changes}
    with pytest.raises(NotificationError, match=message):
        notification_preference_set(user=user, actor=SYSTEM, **arguments)  # type: ignore[arg-type]
    assert not AuditLogEntry.objects.filter(
        event_type=AuditEvent.NOTIFICATION_PREFERENCE_SAVED
    ).exists()


# --- quiet hours --------------------------------------------------------------------------


def test_quiet_hours_delay_a_message_until_they_end() -> None:
    night = dt.datetime(2026, 5, 4, 15, 0, tzinfo=dt.UTC)  # 23:00 in Taipei
    wallet = short_wallet()
    owner(wallet.account, "sleeper@example.com")
    shortage_warnings_run(as_of=night, actor=SYSTEM)

    assert notifications_send(as_of=night).sent == 0
    assert notifications_send(as_of=night + dt.timedelta(hours=8, minutes=59)).sent == 0  # 07:59
    assert _statuses() == [("sleeper@example.com", "email", "queued")]
    assert mail.outbox == []

    morning = night + dt.timedelta(hours=9)  # 08:00 local
    assert notifications_send(as_of=morning).sent == 1
    assert _statuses() == [("sleeper@example.com", "email", "sent")]
    assert Notification.objects.get().sent_at == morning


def test_a_members_own_quiet_hours_replace_the_default() -> None:
    night = dt.datetime(2026, 5, 4, 15, 0, tzinfo=dt.UTC)  # 23:00 in Taipei
    wallet = short_wallet()
    owl = owner(wallet.account, "owl@example.com")
    lark = owner(wallet.account, "lark@example.com")
    notification_preference_set(
        user=owl,
        topic="shortage",
        email=True,
        sms=False,
        quiet_start=dt.time(9),
        quiet_end=dt.time(17),
        actor=SYSTEM,
    )
    notification_preference_set(  # equal ends: no quiet hours at all
        user=lark,
        topic="shortage",
        email=True,
        sms=False,
        quiet_start=dt.time(0),
        quiet_end=dt.time(0),
        actor=SYSTEM,
    )
    shortage_warnings_run(as_of=night, actor=SYSTEM)
    notifications_send(as_of=night)
    assert sorted(m.to[0] for m in mail.outbox) == ["lark@example.com", "owl@example.com"]


# --- sending ------------------------------------------------------------------------------


@override_settings(SMS_BACKEND="tests.portal.notifications.test_notifications.FailingSmsBackend")
def test_a_failed_text_is_recorded_with_its_error_and_the_email_still_goes() -> None:
    wallet = short_wallet()
    user = owner(wallet.account, "both@example.com")
    notification_preference_set(
        user=user, topic="shortage", email=True, sms=True, phone="+886912345678", actor=SYSTEM
    )
    shortage_warnings_run(as_of=NOW, actor=SYSTEM)
    result = notifications_send(as_of=NOW)
    assert (result.sent, result.failed) == (1, 1)
    failed = Notification.objects.get(channel="sms")
    assert (failed.status, failed.error, failed.sent_at) == (
        "failed",
        "gateway answered 503: try later",
        None,
    )
    assert Notification.objects.get(channel="email").status == "sent"
    # A failure is final: the next run does not send it again.
    assert notifications_send(as_of=NOW).failed == 0


def test_the_email_is_bilingual_and_links_to_the_account() -> None:
    wallet = short_wallet(days_left="0")
    owner(wallet.account, "empty@example.com")
    shortage_warnings_run(as_of=NOW, actor=SYSTEM)
    notifications_send(as_of=NOW)
    [message] = mail.outbox
    assert "No credit left" in message.subject
    assert wallet.account.name in message.subject
    assert f"/a/{wallet.account.public_id}/" in message.body
    assert "no credit left" in message.body


def test_the_sender_claims_rows_in_batches(settings: object) -> None:
    settings.NOTIFICATION_SEND_BATCH = 2  # type: ignore[attr-defined]
    wallet = short_wallet()
    for _ in range(5):
        owner(wallet.account)
    shortage_warnings_run(as_of=NOW, actor=SYSTEM)
    assert notifications_send(as_of=NOW, limit=3).sent == 3
    assert notifications_send(as_of=NOW).sent == 2
    assert len(mail.outbox) == 5


# --- bill notices -------------------------------------------------------------------------


def _bill(account: Account, *, status: str = "issued", due_in_days: int = 14) -> Bill:
    issued_at = NOW - dt.timedelta(hours=2)
    return Bill.objects.create(
        account=account,
        **bill_numbers(next(_numbers)),
        period_start=dt.date(2026, 4, 1),
        period_end=dt.date(2026, 5, 1),
        currency="TWD",
        status=status,
        subtotal=1000_00,
        tax=50_00,
        total=1050_00,
        issued_at=issued_at,
        due_at=issued_at + dt.timedelta(days=due_in_days),
        paid_at=NOW if status == "paid" else None,
        created_at=issued_at,
    )


def test_bill_issued_and_overdue_notices_go_once_per_bill_topic_user_and_channel() -> None:
    account = make_account(payment_mode="postpaid")
    payer = make_user("payer@example.com")
    make_membership(payer, Role.PAYER, account=account)
    viewer = make_user("viewer@example.com")
    make_membership(viewer, Role.VIEWER, account=account)
    notification_preference_set(
        user=payer, topic="bill_overdue", email=True, sms=True, phone="+886911111111", actor=SYSTEM
    )
    bill = _bill(account)

    assert bill_notices_queue(as_of=NOW, actor=SYSTEM) == 1
    assert bill_notices_queue(as_of=NOW + dt.timedelta(hours=1), actor=SYSTEM) == 0
    assert _statuses(key__startswith=f"bill:{bill.pk}:") == [
        ("payer@example.com", "email", "queued")
    ]
    notifications_send(as_of=NOW)
    [issued] = mail.outbox
    assert str(bill.number) in issued.subject
    assert "2026-04-01 to 2026-04-30" in issued.body  # the last day, not the exclusive end

    overdue_at = NOW + dt.timedelta(days=15)
    assert bill_notices_queue(as_of=overdue_at, actor=SYSTEM) == 2  # email and SMS
    assert bill_notices_queue(as_of=overdue_at + dt.timedelta(hours=1), actor=SYSTEM) == 0
    notifications_send(as_of=overdue_at)
    assert "overdue" in mail.outbox[1].subject
    # One text in both languages, English first.
    assert [m.body for m in MemorySmsBackend.outbox] == [
        f"Smart Meter Portal: bill {bill.number} of 1050.00 TWD is overdue. / "
        f"智慧電表入口網站：帳單 {bill.number}（金額 1050.00 TWD）已逾期。"  # noqa: RUF001
    ]
    assert sorted(
        Notification.objects.filter(key__startswith=f"bill:{bill.pk}:").values_list(
            "topic", "channel", "status"
        )
    ) == [
        ("bill_issued", "email", "sent"),
        ("bill_overdue", "email", "sent"),
        ("bill_overdue", "sms", "sent"),
    ]
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.BILL_NOTICES_QUEUED).count() == 2


def test_paid_void_and_old_bills_are_not_chased() -> None:
    account = make_account(payment_mode="postpaid")
    owner(account, "o@example.com")
    paid = _bill(account, status="paid", due_in_days=1)
    later = NOW + dt.timedelta(days=3)
    bill_notices_queue(as_of=later, actor=SYSTEM)
    assert sorted(Notification.objects.values_list("key", "topic")) == [
        (f"bill:{paid.pk}:bill_issued", "bill_issued")
    ]
    # Issued more than the lookback ago: no notice at all on a first deployment.
    Notification.objects.all().delete()
    bill_notices_queue(as_of=NOW + dt.timedelta(days=60), actor=SYSTEM)
    assert not Notification.objects.exists()


def test_a_corporate_bill_tells_the_subsidiary_managers() -> None:
    from tests.factories import make_organisation

    group = make_organisation("G")
    sub = make_organisation("S", parent=group)
    manager = make_user("sub-manager@example.com")
    make_membership(manager, Role.MANAGER, organisation=sub)
    make_membership(make_user("group-manager@example.com"), Role.MANAGER, organisation=group)
    account = make_account(organisation=sub, payment_mode="postpaid")
    _bill(account)
    bill_notices_queue(as_of=NOW, actor=SYSTEM)
    assert _statuses() == [("sub-manager@example.com", "email", "queued")]


def test_a_notice_is_rendered_only_while_someone_is_still_to_be_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing.services import notices

    rendered: list[int] = []
    render = notices._bill_texts

    def counting(bill: Bill, topic: str) -> dict[str, str]:
        rendered.append(bill.pk)
        return render(bill, topic)  # type: ignore[arg-type]

    monkeypatch.setattr(notices, "_bill_texts", counting)
    account = make_account(payment_mode="postpaid")
    owner(account, "o@example.com")
    bill = _bill(account)
    bill_notices_queue(as_of=NOW, actor=SYSTEM)
    assert rendered == [bill.pk, bill.pk]  # once per language
    other = make_account(payment_mode="postpaid")
    owner(other, "p@example.com")
    later = _bill(other)
    rendered.clear()
    bill_notices_queue(as_of=NOW + dt.timedelta(hours=1), actor=SYSTEM)
    assert rendered == [later.pk, later.pk]  # the first bill's people are told already
