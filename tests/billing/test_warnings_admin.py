"""Staff edit warning policies in the admin (validated, audited) and read warnings and
notifications; the tasks are routed to their queues and call the services."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core import mail
from django.test import Client
from django.utils import timezone

from billing.models import ShortageWarning, WarningPolicy
from billing.tasks.warnings import bill_notices_task, shortage_warnings_task
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.celery import app
from portal.notifications.models import Notification
from portal.notifications.tasks import notifications_send_task
from tests.billing.test_warnings import charged, owner, prepaid, set_balance
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = make_user("root@utility.example", staff=True)
    TOTP.activate(user, generate_totp_secret())
    client = Client()
    client.force_login(user)
    return client


def test_a_policy_is_added_through_the_service_and_audited(
    admin_client: Client, world: World
) -> None:
    response = admin_client.post(
        "/admin/billing/warningpolicy/add/",
        {"organisation": world.sub1.pk, "account": "", "thresholds": "3,10"},
    )
    assert response.status_code == 302, response.content
    policy = WarningPolicy.objects.get()
    assert (policy.organisation_id, policy.thresholds) == (world.sub1.pk, [10, 3, 0])
    entry = AuditLogEntry.objects.get(event_type=AuditEvent.WARNING_POLICY_SAVED)
    assert entry.actor_label == "root@utility.example"

    response = admin_client.post(
        f"/admin/billing/warningpolicy/{policy.pk}/change/", {"thresholds": "5"}
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.thresholds == [5, 0]
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.WARNING_POLICY_SAVED).count() == 2


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"thresholds": "7,-1"}, "greater than or equal to 0"),
        ({"thresholds": "400"}, "between 0 and 365"),
        ({"thresholds": "1,2,3,4,5,6"}, "At most 6"),
        ({"thresholds": "seven"}, "Enter a whole number"),
        ({"thresholds": "7", "organisation": ""}, "either an organisation or an account"),
    ],
)
def test_invalid_policies_are_refused_with_a_clear_error(
    admin_client: Client, world: World, data: dict[str, str], error: str
) -> None:
    form = {"organisation": str(world.sub1.pk), "account": "", **data}
    response = admin_client.post("/admin/billing/warningpolicy/add/", form)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not WarningPolicy.objects.exists()


def test_warnings_and_notifications_are_listed_read_only(admin_client: Client) -> None:
    wallet = prepaid()
    now = timezone.now()
    charged(wallet, 100_00, as_of=now)
    set_balance(wallet, 0, at=now)
    owner(wallet.account)
    shortage_warnings_task()
    warning = ShortageWarning.objects.filter(threshold=0).get()
    notification = Notification.objects.get()
    for page in [
        "/admin/billing/warningpolicy/",
        "/admin/billing/warningpolicy/add/",
        "/admin/billing/shortagewarning/",
        "/admin/billing/shortagewarning/?level__exact=0",
        f"/admin/billing/shortagewarning/{warning.pk}/change/",
        "/admin/notifications/notification/",
        "/admin/notifications/notification/?status__exact=queued&channel__exact=email",
        f"/admin/notifications/notification/{notification.pk}/change/",
    ]:
        assert admin_client.get(page).status_code == 200, page
    assert admin_client.get("/admin/notifications/notification/add/").status_code == 403
    assert admin_client.post(
        f"/admin/notifications/notification/{notification.pk}/delete/", {"post": "yes"}
    ).status_code in (403, 302)
    assert Notification.objects.filter(pk=notification.pk).exists()


def test_the_tasks_call_the_services_and_the_sender_has_its_own_queue() -> None:
    wallet = prepaid()
    now = timezone.now()
    charged(wallet, 100_00, as_of=now)
    set_balance(wallet, 0, at=now)
    owner(wallet.account)
    assert shortage_warnings_task()["warnings"] == 4
    assert shortage_warnings_task()["warnings"] == 0
    assert bill_notices_task() == 0
    result = notifications_send_task()
    # Inside the default quiet hours (22:00-08:00 Taipei) the email waits in the queue.
    assert result["sent"] + Notification.objects.filter(status="queued").count() == 1
    assert len(mail.outbox) == result["sent"]

    def queue(name: str) -> str:
        return str(app.amqp.router.route({}, name)["queue"].name)

    assert queue("portal.notifications.tasks.notifications_send_task") == "notifications"
    assert queue("billing.tasks.warnings.shortage_warnings_task") == "billing"
    beat = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {
        "billing.tasks.warnings.shortage_warnings_task",
        "billing.tasks.warnings.bill_notices_task",
        "portal.notifications.tasks.notifications_send_task",
    } <= beat
