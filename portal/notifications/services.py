"""Notifications: members' preferences, the queue of messages, and the sender.

The path of every message (low-credit warnings, postpaid bill notices, meter alarms):

1. A producer (billing, meters) calls `notifications_queue` with one `Target` per thing to tell
   about: a key ("warning:12"), the account, the audience (`portal.tenancy.selectors.Audience`)
   and the text already rendered in every language. Rows are inserted set-wise, one per
   recipient and channel, from the tenancy recipients rule and each member's
   `NotificationPreference` for the topic. No preference: email on, SMS off; but a viewer hears
   an operational alarm (OPERATIONAL_TOPICS) only with a channel switched on for it. SMS needs
   a phone number. A member with every channel off still gets one row, status `suppressed`
   (channel email), so the record shows that they were meant to be told and why they were not.
   A member already told about a key (on any channel, even suppressed) is not told again.
2. `notifications_send` (minutely, queue `notifications`) claims queued rows with
   `SELECT ... FOR UPDATE SKIP LOCKED`, so parallel workers never take the same row, sends
   them and stores `sent` or `failed` with the error. Rows inside the member's quiet hours (local
   time of the account; the site default when the member has none) are not claimed: they wait
   for a later run, they are never dropped.

Delivery is at least once per row: a worker that dies mid-batch leaves its rows queued (the
transaction rolls back) and they go again; batches are small (NOTIFICATION_SEND_BATCH) to keep
that rare case small. A failed row is not retried automatically: a gateway that timed out may
have delivered, and staff see failures in the admin list.

A message goes in the member's language (`User.language`); a member without one gets every
language the portal ships in one message, English first. Texts are short.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.errors import DomainError
from portal.notifications.models import Notification, NotificationPreference
from portal.notifications.sms import Sms, SmsError, sms_backend
from portal.notifications.topics import OPERATIONAL_TOPICS, OPT_IN_TOPICS, Topic
from portal.tenancy.roles import Role
from portal.tenancy.selectors import MEMBERS_TO_NOTIFY_SQL, Audience
from portal.users.models import User

logger = logging.getLogger(__name__)

PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


class MissingText(Exception):
    """A row has no text (queued before the move from billing): it is marked failed."""


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
    if topic not in Topic.values:
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


@transaction.atomic
def notification_preferences_set(
    *,
    user: User,
    changes: Sequence[dict[str, Any]],
    language: str | None = None,
    actor: Actor,
) -> int:
    """Save several topics' choices at once (each audited), and the member's language when
    given: all of them or none. Each change holds notification_preference_set's keyword
    arguments. Return how many things were saved.

    :raises NotificationError: if one is refused; nothing is saved then.
    """
    for change in changes:
        notification_preference_set(user=user, actor=actor, **change)
    if language is None or language == user.language:
        return len(changes)
    if language and language not in {code for code, _name in settings.LANGUAGES}:
        raise NotificationError(_("Unknown language."))
    before = user.language
    user.language = language
    user.save(update_fields=["language"])
    audit_record(
        actor=actor,
        event=AuditEvent.NOTIFICATION_PREFERENCE_SAVED,
        target=user,
        # The event's sentence names a topic; the language is every topic's.
        data={"topic": "language", "language": {"before": before, "after": language}},
    )
    return len(changes) + 1


# --- Queueing -----------------------------------------------------------------------------

# One message's text in one language: {"subject", "body", "sms"}; a message's texts by language.
Texts = dict[str, dict[str, str]]


def texts_in_every_language(render: Callable[[], dict[str, str]]) -> Texts:
    """Call `render` once per language the portal ships (English first) under that language."""
    texts: Texts = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            texts[code] = render()
    return texts


@dataclass(frozen=True)
class Target:
    """One thing to tell an account's people about: `key` is unique per producer and thing;
    `texts` renders the message in every language (called only if someone is to be told)."""

    key: str
    account_id: int
    audience: Audience
    texts: Callable[[], Texts]


# From `recipients(key, account_id, user_id, role)`: one row per wanted channel, or one
# suppressed email row for a member with every channel off. A viewer with no channel switched on
# for an operational topic is not a recipient at all: they never asked for alarms.
_CHANNELS_SQL = f"""
    SELECT r.key, r.account_id, r.user_id, ch.channel,
           CASE WHEN ch.wanted THEN 'queued' ELSE 'suppressed' END AS status
    FROM recipients r
    JOIN users_user u ON u.id = r.user_id AND u.is_active
    LEFT JOIN notifications_notificationpreference np ON np.user_id = r.user_id
         AND np.topic = %(topic)s
    CROSS JOIN LATERAL (
        SELECT (%(operational)s AND r.role = {int(Role.VIEWER)}) OR %(opt_in)s AS opt_in
    ) gate
    CROSS JOIN LATERAL (
        SELECT COALESCE(np.email, NOT gate.opt_in) AND u.email <> '' AS email,
               COALESCE(np.sms, false) AND COALESCE(np.phone, '') <> '' AS sms
    ) want
    CROSS JOIN LATERAL (VALUES ('email', want.email), ('sms', want.sms)) AS ch(channel, wanted)
    WHERE (ch.wanted OR (ch.channel = 'email' AND NOT want.email AND NOT want.sms))
      AND NOT (gate.opt_in AND NOT (COALESCE(np.email, false) OR COALESCE(np.sms, false)))
"""  # noqa: S608 - constant SQL; values are parameters


# New (key, member, channel) rows of `targets`, for the statements below.
_NEW_ROWS_SQL = f"""
    WITH targets AS (
        SELECT * FROM unnest(%(keys)s::text[], %(accounts)s::bigint[], %(audiences)s::text[])
            AS t(key, account_id, audience)
    ), recipients AS ({MEMBERS_TO_NOTIFY_SQL}), channels AS ({_CHANNELS_SQL})
    SELECT c.* FROM channels c
    WHERE NOT EXISTS (
        SELECT 1 FROM notifications_notification n
        WHERE n.key = c.key AND n.user_id = c.user_id
    )
"""  # noqa: S608 - constant SQL; values are parameters


def notifications_queue(
    *, topic: Topic, targets: Sequence[Target], as_of: dt.datetime
) -> list[str]:
    """Queue a message about each target to its audience; return the key of every row written.

    Runs inside the producer's transaction (which audits the business change). Once per key and
    member: a member already told (on any channel, even suppressed) is not told again when they
    later switch a channel on. Texts are rendered only for targets with someone new to tell:
    producers may offer the same targets run after run.
    """
    if not targets:
        return []
    params: dict[str, Any] = {
        "keys": [t.key for t in targets],
        "accounts": [t.account_id for t in targets],
        "audiences": [str(t.audience) for t in targets],
        "topic": str(topic),
        "operational": topic in OPERATIONAL_TOPICS,
        "opt_in": topic in OPT_IN_TOPICS,
        "now": as_of,
    }
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT key FROM ({_NEW_ROWS_SQL}) new", params)  # noqa: S608
        wanted = {row[0] for row in cursor.fetchall()}
        if not wanted:
            return []
        texts = {t.key: t.texts() for t in targets if t.key in wanted}
        cursor.execute(
            f"""
            INSERT INTO notifications_notification (user_id, account_id, topic, channel, key,
                                                    texts, status, error, created_at)
            SELECT new.user_id, new.account_id, %(topic)s, new.channel, new.key,
                   %(texts)s::jsonb -> new.key, new.status, '', %(now)s
            FROM ({_NEW_ROWS_SQL}) new
            WHERE new.key = ANY(%(wanted)s)
            ON CONFLICT DO NOTHING
            RETURNING key
            """,  # noqa: S608 - constant SQL, values are parameters
            {
                **params,
                "wanted": sorted(wanted),
                "texts": json.dumps(texts, ensure_ascii=False),
            },
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
    FROM notifications_notification n
    JOIN tenancy_account a ON a.id = n.account_id
    LEFT JOIN notifications_notificationpreference np ON np.user_id = n.user_id
         AND np.topic = n.topic
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


def _languages(notification: Notification) -> list[str]:
    texts = notification.texts or {}
    if notification.user.language in texts:
        return [notification.user.language]
    return [code for code, _name in settings.LANGUAGES if code in texts]


def _email(notification: Notification) -> tuple[str, str]:
    """Subject and body in the member's language, or in every language, English first."""
    texts = [notification.texts[code] for code in _languages(notification)]
    if not texts:
        raise MissingText("no text to send (queued before the notifications app)")
    subjects = dict.fromkeys(" ".join(text["subject"].split()) for text in texts)
    bodies = dict.fromkeys(text["body"].strip() for text in texts)
    return " / ".join(subjects), "\n\n———\n\n".join(bodies) + "\n"


def _sms_text(notification: Notification) -> str:
    """A short text in the member's language, or every language in one message (Chinese makes
    it UCS-2: keep it short)."""
    texts = [notification.texts[code]["sms"] for code in _languages(notification)]
    if not texts:
        raise MissingText("no text to send (queued before the notifications app)")
    return " / ".join(dict.fromkeys(texts))


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
        rows = list(Notification.objects.filter(id__in=ids).select_related("user").order_by("id"))
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
            except (SmsError, MissingText, smtplib.SMTPException, OSError) as error:
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

    Delivery bookkeeping: the business change (the warning, the bill, the meter event) is
    audited by its producer; each row keeps its own status, error and time.
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
