"""The texts of billing's messages (shortage warnings, bill notices), queued on the one
notifications path (`portal.notifications`) with the text rendered here in every language."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import partial
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.translation import gettext

from billing.models import Bill, ShortageWarning
from portal.lib.money import format_minor
from portal.notifications.services import Target, notifications_queue, texts_in_every_language
from portal.notifications.topics import Topic
from portal.tenancy.models import Account
from portal.tenancy.selectors import Audience


def _link(account: Account) -> str:
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}/a/{account.public_id}/"


def _render(name: str, context: dict[str, Any], sms: str) -> dict[str, str]:
    return {
        "subject": render_to_string(f"billing/email/{name}_subject.txt", context),
        "body": render_to_string(f"billing/email/{name}_message.txt", context),
        "sms": sms,
    }


def _warning_texts(warning: ShortageWarning) -> dict[str, str]:
    account = warning.account
    context = {
        "account": account,
        "organisation": account.organisation,
        "site_name": settings.PORTAL_SITE_NAME,
        "topic": Topic.SHORTAGE,
        "warning": warning,
        "escalated": warning.level > 0,
        "empty": warning.balance <= 0,
        "balance": format_minor(warning.balance, account.currency),
        "days_left": warning.days_left,
        "link": _link(account),
    }
    if warning.balance <= 0:
        sms = gettext("%(site)s: account %(number)s has no credit left. Top up now.") % {
            "site": settings.PORTAL_SITE_NAME,
            "number": account.number,
        }
    else:
        sms = gettext(
            "%(site)s: account %(number)s has about %(days)s days of credit left (%(balance)s)."
        ) % {
            "site": settings.PORTAL_SITE_NAME,
            "number": account.number,
            "days": warning.days_left if warning.days_left is not None else "?",
            "balance": format_minor(warning.balance, account.currency),
        }
    return _render("shortage", context, sms)


def _bill_texts(bill: Bill, topic: Topic) -> dict[str, str]:
    account = bill.account
    context = {
        "account": account,
        "organisation": account.organisation,
        "site_name": settings.PORTAL_SITE_NAME,
        "topic": topic,
        "bill": bill,
        "total": format_minor(bill.total, bill.currency),
        # Periods are half-open; people read the last day that is in the bill.
        "last_day": bill.period_end - dt.timedelta(days=1),
        "link": _link(account),
    }
    values = {
        "site": settings.PORTAL_SITE_NAME,
        "bill": bill.number,
        "total": format_minor(bill.total, bill.currency),
    }
    if topic == Topic.BILL_OVERDUE:
        sms = gettext("%(site)s: bill %(bill)s of %(total)s is overdue.") % values
    else:
        sms = gettext("%(site)s: your bill %(bill)s of %(total)s is ready.") % values
    return _render("bill", context, sms)


def warning_notices_queue(*, warning_ids: Sequence[int], as_of: dt.datetime) -> int:
    """Queue the messages of new shortage warnings; return how many rows were written.

    Runs inside the warning run's transaction (which audits). Of the warnings one run creates
    for one account and level, only the most urgent (lowest threshold) is sent: a balance that
    fell through 7 and 3 days between two runs gets one "3 days" message, not two. The others
    stay recorded without deliveries, and never fire later. Level 0 goes to the account's own
    people, level 1 (the escalation) one level up.
    """
    most_urgent: dict[tuple[int, int], ShortageWarning] = {}
    for warning in ShortageWarning.objects.filter(id__in=warning_ids).select_related(
        "account", "account__organisation"
    ):
        current = most_urgent.get((warning.account_id, warning.level))
        if current is None or warning.threshold < current.threshold:
            most_urgent[(warning.account_id, warning.level)] = warning
    targets = [
        Target(
            key=f"warning:{warning.pk}",
            account_id=warning.account_id,
            audience=Audience.ESCALATION if warning.level > 0 else Audience.ACCOUNT,
            texts=partial(texts_in_every_language, partial(_warning_texts, warning)),
        )
        for warning in most_urgent.values()
    ]
    return len(notifications_queue(topic=Topic.SHORTAGE, targets=targets, as_of=as_of))


def bill_notices_queue_for(
    *, topic: Topic, bill_ids: Sequence[int], as_of: dt.datetime
) -> list[int]:
    """Queue a bill notice (`bill_issued` or `bill_overdue`) to the account's own people for
    each bill; return the bill id of every row written (once per bill, topic and member)."""
    bills = Bill.objects.filter(id__in=bill_ids).select_related("account", "account__organisation")
    targets = [
        Target(
            key=f"bill:{bill.pk}:{topic}",
            account_id=bill.account_id,
            audience=Audience.ACCOUNT,
            texts=partial(texts_in_every_language, partial(_bill_texts, bill, topic)),
        )
        for bill in bills
    ]
    return [
        int(key.split(":")[1])
        for key in notifications_queue(topic=topic, targets=targets, as_of=as_of)
    ]
