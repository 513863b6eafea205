"""Notifications: members' preferences, the queue of messages, and the sender.

The path of every message (low-credit warnings and postpaid bill notices alike):

1. A producer inserts `Notification` rows set-wise, one per recipient and channel, from the
   recipients rule (`billing.warning_selectors.RECIPIENTS_SQL`) and each member's
   `NotificationPreference` for the topic. No preference: email on, SMS off. SMS needs a phone
   number. A member with every channel off still gets one row, status `suppressed` (channel
   email), so the record shows that they were meant to be told and why they were not.
2. `notifications_send` (minutely, queue `notifications`) claims queued rows with
   `SELECT ... FOR UPDATE SKIP LOCKED`, so parallel workers never take the same row, sends
   them and stores `sent` or `failed` with the error. Rows inside the member's quiet hours (local
   time of the account; the site default when the member has none) are not claimed: they wait
   for a later run, they are never dropped.

Delivery is at least once per row: a worker that dies mid-batch leaves its rows queued (the
transaction rolls back) and they go again; batches are small (NOTIFICATION_SEND_BATCH) to keep
that rare case small. A failed row is not retried automatically: a gateway that timed out may
have delivered, and staff see failures in the admin list.

Emails are bilingual (every language the portal ships, English first), like the meters' event
emails: members have no language preference yet. Texts are short, both languages in one message.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing.models import Notification, NotificationPreference
from billing.sms import Sms, SmsError, sms_backend
from billing.warning_selectors import RECIPIENTS_SQL
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.errors import DomainError
from portal.lib.money import format_minor
from portal.users.models import User

logger = logging.getLogger(__name__)

PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


class NotificationError(DomainError):
    """A notification preference that cannot be saved; the message says why."""


# --- Preferences --------------------------------------------------------------------------


def _describe(pref: NotificationPreference | None) -> dict[str, Any]:
    if pref is None:
        return {"email": True, "sms": False, "phone": "", "quiet": None}
    quiet = (
        f"{pref.quiet_start:%H:%M}-{pref.quiet_end:%H:%M}"
        if pref.quiet_start is not None and pref.quiet_end is not None
        else None
    )
    return {"email": pref.email, "sms": pref.sms, "phone": pref.phone, "quiet": quiet}


@transaction.atomic
def notification_preference_set(
    *,
    user: User,
    topic: str,
    email: bool,
    sms: bool,
    phone: str = "",
    quiet_start: dt.time | None = None,
    quiet_end: dt.time | None = None,
    actor: Actor,
) -> NotificationPreference:
    """Save a member's channels and quiet hours for one topic (audited; the actor is the member
    when they change their own).

    Quiet hours are both given or both empty (empty: the site's default quiet hours); equal
    start and end mean no quiet hours at all.

    :raises NotificationError: for an unknown topic, SMS without a valid mobile number (E.164,
        e.g. +886912345678) or only one end of the quiet hours.
    """
    if topic not in Notification.Topic.values:
        raise NotificationError(_("Unknown notification topic."))
    phone = phone.replace(" ", "").replace("-", "").strip()
    if phone and not PHONE_RE.match(phone):
        raise NotificationError(
            _("Give the mobile number in international form, for example +886912345678.")
        )
    if sms and not phone:
        raise NotificationError(_("Text messages need a mobile number."))
    if (quiet_start is None) != (quiet_end is None):
        raise NotificationError(_("Give both ends of the quiet hours, or neither."))
    existing = (
        NotificationPreference.objects.select_for_update().filter(user=user, topic=topic).first()
    )
    before = _describe(existing)
    pref, _created = NotificationPreference.objects.update_or_create(
        user=user,
        topic=topic,
        defaults={
            "email": email,
            "sms": sms,
            "phone": phone,
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
        },
    )
    after = _describe(pref)
    audit_record(
        actor=actor,
        event=AuditEvent.NOTIFICATION_PREFERENCE_SAVED,
        target=pref,
        data={
            "topic": topic,
            **{
                key: {"before": before[key], "after": after[key]}
                for key in after
                if before[key] != after[key]
            },
        },
    )
    return pref


# --- Queueing -----------------------------------------------------------------------------

# From `recipients(ref_id, account_id, user_id)`: one row per wanted channel, or one suppressed
# email row for a member with every channel off. %(topic)s is the preference's topic.
_CHANNELS_SQL = """
    SELECT r.ref_id, r.account_id, r.user_id, ch.channel,
           CASE WHEN ch.wanted THEN 'queued' ELSE 'suppressed' END AS status
    FROM recipients r
    JOIN users_user u ON u.id = r.user_id AND u.is_active
    LEFT JOIN billing_notificationpreference np ON np.user_id = r.user_id
         AND np.topic = %(topic)s
    CROSS JOIN LATERAL (
        SELECT COALESCE(np.email, true) AND u.email <> '' AS email,
               COALESCE(np.sms, false) AND COALESCE(np.phone, '') <> '' AS sms
    ) want
    CROSS JOIN LATERAL (VALUES ('email', want.email), ('sms', want.sms)) AS ch(channel, wanted)
    WHERE ch.wanted OR (ch.channel = 'email' AND NOT want.email AND NOT want.sms)
"""


@transaction.atomic
def notification_preferences_set(
    *, user: User, changes: Sequence[dict[str, Any]], actor: Actor
) -> int:
    """Save several topics' choices at once (each audited): all of them or none. Each change
    holds notification_preference_set's keyword arguments. Return how many were saved.

    :raises NotificationError: if one is refused; nothing is saved then.
    """
    for change in changes:
        notification_preference_set(user=user, actor=actor, **change)
    return len(changes)


def notifications_queue_for_warnings(*, warning_ids: Sequence[int], as_of: dt.datetime) -> int:
    """Queue the messages of new shortage warnings; return how many rows were written.

    Runs inside the warning run's transaction (which audits). Of the warnings one run creates
    for one account and level, only the most urgent (lowest threshold) is sent: a balance that
    fell through 7 and 3 days between two runs gets one "3 days" message, not two. The others
    stay recorded without deliveries, and never fire later.
    """
    if not warning_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH targets AS (
                SELECT DISTINCT ON (account_id, level) id AS ref_id, account_id, level
                FROM billing_shortagewarning WHERE id = ANY(%(ids)s)
                ORDER BY account_id, level, threshold
            ), recipients AS ({RECIPIENTS_SQL}), channels AS ({_CHANNELS_SQL})
            INSERT INTO billing_notification (user_id, account_id, topic, channel, warning_id,
                                              status, error, created_at)
            SELECT user_id, account_id, %(topic)s, channel, ref_id, status, '', %(now)s
            FROM channels
            ON CONFLICT DO NOTHING
            """,  # noqa: S608 - constant SQL, values are parameters
            {"ids": list(warning_ids), "topic": Notification.Topic.SHORTAGE, "now": as_of},
        )
        return int(cursor.rowcount)


def notifications_queue_for_bills(
    *, topic: str, bill_ids: Sequence[int], as_of: dt.datetime
) -> list[int]:
    """Queue a bill notice (`bill_issued` or `bill_overdue`) to the level-0 recipients of each
    bill's account; return the bill id of every row written.

    Once per bill, topic and member: a member already told (on any channel, even suppressed)
    is not told again when they later switch a channel on.
    """
    if not bill_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH targets AS (
                SELECT b.id AS ref_id, b.account_id, 0 AS level
                FROM billing_bill b WHERE b.id = ANY(%(ids)s)
            ), recipients AS ({RECIPIENTS_SQL}), channels AS ({_CHANNELS_SQL})
            INSERT INTO billing_notification (user_id, account_id, topic, channel, bill_id,
                                              status, error, created_at)
            SELECT c.user_id, c.account_id, %(topic)s, c.channel, c.ref_id, c.status, '', %(now)s
            FROM channels c
            WHERE NOT EXISTS (
                SELECT 1 FROM billing_notification n
                WHERE n.bill_id = c.ref_id AND n.topic = %(topic)s AND n.user_id = c.user_id
            )
            ON CONFLICT DO NOTHING
            RETURNING bill_id
            """,  # noqa: S608 - constant SQL, values are parameters
            {"ids": list(bill_ids), "topic": topic, "now": as_of},
        )
        return [row[0] for row in cursor.fetchall()]


# --- Sending ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    sent: int = 0
    failed: int = 0

    def __add__(self, other: SendResult) -> SendResult:
        return SendResult(self.sent + other.sent, self.failed + other.failed)


def _quiet_default() -> tuple[dt.time, dt.time]:
    start, end = settings.NOTIFICATION_QUIET_HOURS
    return dt.time.fromisoformat(start), dt.time.fromisoformat(end)


# Queued rows outside their member's quiet hours, oldest first, locked for this transaction.
# Quiet hours [start, end) in the account's local time; start > end wraps midnight; start = end
# is no quiet time at all.
_CLAIM_SQL = """
    SELECT n.id
    FROM billing_notification n
    JOIN tenancy_account a ON a.id = n.account_id
    LEFT JOIN billing_notificationpreference np ON np.user_id = n.user_id AND np.topic = n.topic
    CROSS JOIN LATERAL (
        SELECT CASE WHEN np.quiet_start IS NOT NULL AND np.quiet_end IS NOT NULL
                    THEN np.quiet_start ELSE %(qs)s::time END AS qs,
               CASE WHEN np.quiet_start IS NOT NULL AND np.quiet_end IS NOT NULL
                    THEN np.quiet_end ELSE %(qe)s::time END AS qe,
               (%(now)s::timestamptz AT TIME ZONE a.time_zone)::time AS t
    ) q
    WHERE n.status = 'queued'
      AND NOT ((q.qs < q.qe AND q.t >= q.qs AND q.t < q.qe)
               OR (q.qs > q.qe AND (q.t >= q.qs OR q.t < q.qe)))
    ORDER BY n.id
    LIMIT %(batch)s
    FOR UPDATE OF n SKIP LOCKED
"""


def _link(path: str) -> str:
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}{path}"


def _context(notification: Notification) -> dict[str, Any]:
    account = notification.account
    context: dict[str, Any] = {
        "account": account,
        "organisation": account.organisation,
        "site_name": settings.PORTAL_SITE_NAME,
        "topic": notification.topic,
    }
    warning = notification.warning
    if warning is not None:
        context.update(
            warning=warning,
            escalated=warning.level > 0,
            empty=warning.balance <= 0,
            balance=format_minor(warning.balance, account.currency),
            days_left=warning.days_left,
            link=_link(f"/a/{account.public_id}/"),
        )
    bill = notification.bill
    if bill is not None:
        context.update(
            bill=bill,
            total=format_minor(bill.total, bill.currency),
            # Periods are half-open; people read the last day that is in the bill.
            last_day=bill.period_end - dt.timedelta(days=1),
            link=_link(f"/a/{account.public_id}/"),
        )
    return context


def _in_every_language(render: Any) -> list[str]:
    texts = []
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            texts.append(render())
    return list(dict.fromkeys(texts))


def _email(notification: Notification) -> tuple[str, str]:
    """Subject and body in every language the portal ships, English first."""
    context = _context(notification)
    name = "shortage" if notification.warning_id else "bill"
    subjects = _in_every_language(
        lambda: " ".join(render_to_string(f"billing/email/{name}_subject.txt", context).split())
    )
    bodies = _in_every_language(
        lambda: render_to_string(f"billing/email/{name}_message.txt", context).strip()
    )
    return " / ".join(subjects), "\n\n———\n\n".join(bodies) + "\n"


def _sms_text(notification: Notification) -> str:
    """A short text in every language, one message (Chinese makes it UCS-2: keep it short)."""
    account = notification.account

    def render() -> str:
        warning, bill = notification.warning, notification.bill
        if warning is not None and warning.balance <= 0:
            return gettext("%(site)s: account %(number)s has no credit left. Top up now.") % {
                "site": settings.PORTAL_SITE_NAME,
                "number": account.number,
            }
        if warning is not None:
            return gettext(
                "%(site)s: account %(number)s has about %(days)s days of credit left (%(balance)s)."
            ) % {
                "site": settings.PORTAL_SITE_NAME,
                "number": account.number,
                "days": warning.days_left if warning.days_left is not None else "?",
                "balance": format_minor(warning.balance, account.currency),
            }
        assert bill is not None  # noqa: S101 - a notification is about a warning or a bill
        if notification.topic == Notification.Topic.BILL_OVERDUE:
            return gettext("%(site)s: bill %(bill)s of %(total)s is overdue.") % {
                "site": settings.PORTAL_SITE_NAME,
                "bill": bill.number,
                "total": format_minor(bill.total, bill.currency),
            }
        return gettext("%(site)s: your bill %(bill)s of %(total)s is ready.") % {
            "site": settings.PORTAL_SITE_NAME,
            "bill": bill.number,
            "total": format_minor(bill.total, bill.currency),
        }

    return " / ".join(_in_every_language(render))


def _send_batch(*, as_of: dt.datetime, batch: int) -> tuple[SendResult, int]:
    """Claim and send one batch in one transaction; return the result and the rows claimed."""
    quiet_start, quiet_end = _quiet_default()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM_SQL,
                {"qs": str(quiet_start), "qe": str(quiet_end), "now": as_of, "batch": batch},
            )
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return SendResult(), 0
        rows = list(
            Notification.objects.filter(id__in=ids)
            .select_related("user", "account", "account__organisation", "warning", "bill")
            .order_by("id")
        )
        # The number is read when sending, so a corrected number is used by queued texts.
        phones = {
            (user_id, topic): phone
            for user_id, topic, phone in NotificationPreference.objects.filter(
                user_id__in={n.user_id for n in rows}, topic__in={n.topic for n in rows}
            ).values_list("user_id", "topic", "phone")
        }
        mail = get_connection(fail_silently=False)
        sms = None
        sent = failed = 0
        for notification in rows:
            try:
                if notification.channel == Notification.Channel.EMAIL:
                    subject, body = _email(notification)
                    EmailMessage(
                        subject=subject, body=body, to=[notification.user.email], connection=mail
                    ).send()
                else:
                    phone = phones.get((notification.user_id, notification.topic), "")
                    if not phone:
                        raise SmsError("no mobile number")
                    sms = sms or sms_backend()
                    sms.send(
                        Sms(to=phone, body=_sms_text(notification), reference=str(notification.pk))
                    )
            except (SmsError, smtplib.SMTPException, OSError) as error:
                logger.warning("notification %s failed: %s", notification.pk, error)
                notification.status = Notification.Status.FAILED
                notification.error = str(error)[:300] or type(error).__name__
                failed += 1
            else:
                notification.status = Notification.Status.SENT
                notification.sent_at = as_of
                sent += 1
        Notification.objects.bulk_update(rows, ["status", "error", "sent_at"])
        return SendResult(sent=sent, failed=failed), len(ids)


def notifications_send(*, as_of: dt.datetime, limit: int = 5000) -> SendResult:
    """Send queued notifications outside their quiet hours, up to `limit`; return the counts.

    Delivery bookkeeping: the business change (the warning, the bill) is audited by its
    producer; each row keeps its own status, error and time.
    """
    batch = max(1, min(settings.NOTIFICATION_SEND_BATCH, limit))
    total = SendResult()
    claimed_total = 0
    while claimed_total < limit:
        result, claimed = _send_batch(as_of=as_of, batch=min(batch, limit - claimed_total))
        total += result
        claimed_total += claimed
        if claimed < batch:
            break
    return total
