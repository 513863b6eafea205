"""Shortage warnings of prepaid accounts: policies, the hourly run, and bill notices.

Days of credit left
    balance ÷ average daily cost. The average is the sum of `DailyCharge.total - credit` (the
    day's charge less its export credit: what the wallet loses in a day) over the last
    14 complete local days of the account ([today - 14, today) in its time zone) divided by the
    number of those days that have charges: a new account (or one whose charges are missing for
    some days) is judged by the days it was charged, not diluted by empty ones. No charges, or
    a net credit (export above cost), leaves days left unknown: then only the empty-balance
    threshold applies. A balance at or below zero is 0 days. Comparisons are exact integer
    maths (balance * days <= threshold * total); the stored `days_left` is rounded down to 0.1.

Thresholds
    The account's `WarningPolicy`, else its organisation's, else the nearest ancestor's, else
    `settings.SHORTAGE_WARNING_THRESHOLDS` (7, 3, 1, 0). Zero (the empty balance) is always
    added: it comes before a disconnection and cannot be switched off. An account is "under" a
    threshold T when its days left ≤ T (T > 0) or its balance ≤ 0.

Crossings
    `ShortageWarning(account, threshold, crossing, level)` is unique, so a run repeated within
    the same fall creates nothing. The account's current crossing is the latest crossing it was
    warned in, plus one if, after the latest warning of that crossing, a credit to the wallet
    (a top-up, a refund, a credit adjustment, a reversed charge) left the balance above every
    threshold, judged by the current average cost. That is read from the ledger itself (the
    balance after each posting is the current balance plus the postings after it), so no extra
    state is kept and a top-up followed by a fall between two runs still counts. A small top-up
    that leaves the account under its thresholds is not a recovery: it does not warn again.

Levels
    Level 0 goes at once to the account's people (see `MEMBERS_TO_NOTIFY_SQL` in
    `portal.tenancy.selectors`). Level 1 is the escalation: when a level-0 warning is
    SHORTAGE_ESCALATION_AFTER (24 h) old and the account is still under that threshold in the
    same crossing, the managers of the organisation one level up are told. Accounts without a
    parent organisation do not escalate.

One run is one transaction: the state of every short account is computed in one statement
into a temporary table, then the warnings, escalations and their notifications are inserted
set-wise, and one audit entry records what the run created (a run that creates nothing records
nothing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext_lazy as _

from billing.models import Bill, WarningPolicy
from billing.services.notices import bill_notices_queue_for, warning_notices_queue
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.errors import DomainError
from portal.notifications.topics import Topic
from portal.tenancy.models import Account, Organisation

AVERAGE_DAYS = 14
MAX_THRESHOLDS = 6
MAX_THRESHOLD_DAYS = 365


class WarningPolicyError(DomainError):
    """Thresholds that cannot be saved; the message says why."""


# --- Policies -----------------------------------------------------------------------------


def thresholds_clean(thresholds: Sequence[int]) -> list[int]:
    """Return the thresholds as stored: distinct whole days, most days first, zero included.

    :raises WarningPolicyError: for negative, too large or too many thresholds.
    """
    days = set()
    for value in thresholds:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WarningPolicyError(_("Thresholds are whole numbers of days."))
        if value < 0 or value > MAX_THRESHOLD_DAYS:
            raise WarningPolicyError(
                _("Thresholds are between 0 and %(max)s days.") % {"max": MAX_THRESHOLD_DAYS}
            )
        days.add(value)
    days.add(0)
    if len(days) > MAX_THRESHOLDS:
        raise WarningPolicyError(
            _("At most %(max)s thresholds, the empty balance included.") % {"max": MAX_THRESHOLDS}
        )
    return sorted(days, reverse=True)


def _tenant_label(policy: WarningPolicy) -> str:
    if policy.account is not None:
        return f"account {policy.account.number}"
    return f"organisation {policy.organisation}"


@transaction.atomic
def warning_policy_save(
    *,
    thresholds: Sequence[int],
    actor: Actor,
    account: Account | None = None,
    organisation: Organisation | None = None,
) -> WarningPolicy:
    """Set the thresholds of one account or one organisation (and the subtree below it that has
    no policy of its own).

    :raises WarningPolicyError: for invalid thresholds, or not exactly one of account and
        organisation.
    """
    if (account is None) == (organisation is None):
        raise WarningPolicyError(_("A warning policy belongs to one account or one organisation."))
    days = thresholds_clean(thresholds)
    lookup: dict[str, Any] = (
        {"account": account} if account is not None else {"organisation": organisation}
    )
    existing = WarningPolicy.objects.select_for_update().filter(**lookup).first()
    before = list(existing.thresholds) if existing is not None else None
    policy, _created = WarningPolicy.objects.update_or_create(
        **lookup, defaults={"thresholds": days}
    )
    audit_record(
        actor=actor,
        event=AuditEvent.WARNING_POLICY_SAVED,
        account=account,
        organisation=organisation,
        target=policy,
        data={
            "tenant": _tenant_label(policy),
            "thresholds": {
                "before": ", ".join(map(str, before)) if before is not None else None,
                "after": ", ".join(map(str, days)),
            },
        },
    )
    return policy


@transaction.atomic
def warning_policy_delete(*, policy: WarningPolicy, actor: Actor) -> None:
    """Remove a policy: its account or organisation falls back to the policy above it."""
    label = _tenant_label(policy)
    account, organisation = policy.account, policy.organisation
    thresholds = ", ".join(map(str, policy.thresholds))
    target_pk = policy.pk
    policy.delete()
    policy.pk = target_pk  # the audit entry names the row that was removed
    audit_record(
        actor=actor,
        event=AuditEvent.WARNING_POLICY_DELETED,
        account=account,
        organisation=organisation,
        target=policy,
        data={"tenant": label, "thresholds": thresholds},
    )


# --- The run ------------------------------------------------------------------------------

# The state of every prepaid account that is under at least one of its thresholds.
# Parameters: now, default (int[]), days, and first/last: bounds of the local "today" of every
# time zone, so that only recent charges are read whatever the table's size.
_STATE_SQL = """
CREATE TEMPORARY TABLE shortage_state ON COMMIT DROP AS
WITH wallets AS (
    SELECT w.account_id, w.balance, w.ledger_account_id, a.organisation_id, o.parent_id,
           string_to_array(trim(both '/' from o.path), '/')::bigint[] AS ancestors,
           (%(now)s::timestamptz AT TIME ZONE a.time_zone)::date AS today
    FROM billing_wallet w
    JOIN tenancy_account a ON a.id = w.account_id
    LEFT JOIN tenancy_organisation o ON o.id = a.organisation_id
    WHERE a.payment_mode = 'prepaid' AND a.closed_at IS NULL
), cost AS (
    SELECT c.account_id, sum(c.total - c.credit) AS total, count(DISTINCT c.day) AS days
    FROM billing_dailycharge c
    JOIN wallets w ON w.account_id = c.account_id
    WHERE c.day >= w.today - %(days)s AND c.day < w.today
      AND c.day >= %(first)s::date - %(days)s AND c.day < %(last)s::date
    GROUP BY c.account_id
), measured AS (
    SELECT w.*, COALESCE(cost.total, 0) AS total, COALESCE(cost.days, 0) AS days,
           COALESCE(cost.total, 0) > 0 AS known,
           ARRAY(SELECT DISTINCT t FROM unnest(COALESCE(ap.thresholds::int[], op.thresholds,
                                                        %(default)s::int[]) || 0) AS t
                 ORDER BY t DESC) AS thresholds
    FROM wallets w
    LEFT JOIN cost ON cost.account_id = w.account_id
    LEFT JOIN billing_warningpolicy ap ON ap.account_id = w.account_id
    LEFT JOIN LATERAL (
        -- The nearest organisation up the tree that has a policy.
        SELECT p.thresholds::int[] AS thresholds
        FROM billing_warningpolicy p
        WHERE p.organisation_id = ANY(w.ancestors)
        ORDER BY array_position(w.ancestors, p.organisation_id::bigint) DESC
        LIMIT 1
    ) op ON true
)
SELECT m.account_id, m.balance, m.ledger_account_id, m.parent_id, m.known, m.total, m.days,
       m.thresholds, m.thresholds[1] AS top,
       CASE WHEN m.balance <= 0 THEN 0
            WHEN m.known THEN LEAST(floor(m.balance::numeric * m.days * 10 / m.total) / 10,
                                    9999999.9)
       END AS days_left,
       NULL::integer AS crossing
FROM measured m
WHERE m.balance <= 0 OR (m.known AND m.balance * m.days <= m.thresholds[1]::bigint * m.total)
"""

# The current crossing of each short account (see the module docstring): the latest crossing
# it was warned in, plus one if a wallet credit since that crossing's latest warning left the
# balance above every threshold. The balance right after a posting is the current balance plus
# every later posting (postings are debits, the balance their negated sum). Every wallet entry
# carries its account, so the entries since the warning are one index range per account.
_CROSSING_SQL = """
UPDATE shortage_state s
SET crossing = CASE WHEN lc.crossing IS NULL THEN 0
                    WHEN EXISTS (
                        SELECT 1 FROM (
                            SELECT p.amount,
                                   s.balance + COALESCE(sum(p.amount) OVER (
                                       ORDER BY p.entry_id DESC
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                                       AS balance_after
                            FROM billing_journalentry e
                            JOIN billing_posting p ON p.entry_id = e.id
                                 AND p.ledger_account_id = s.ledger_account_id
                            WHERE e.account_id = s.account_id AND e.created_at > lc.warned_at
                        ) after
                        WHERE after.amount < 0 AND after.balance_after > 0
                          AND (NOT s.known
                               OR after.balance_after * s.days > s.top::bigint * s.total)
                    ) THEN lc.crossing + 1
                    ELSE lc.crossing END
FROM shortage_state s2
LEFT JOIN LATERAL (
    SELECT sw.crossing, max(sw.created_at) AS warned_at
    FROM billing_shortagewarning sw
    WHERE sw.account_id = s2.account_id
    GROUP BY sw.crossing
    ORDER BY sw.crossing DESC
    LIMIT 1
) lc ON true
WHERE s2.account_id = s.account_id
"""

# Is the account of `s` under threshold `t`? (exact integer maths, see the module docstring)
_UNDER = "(s.balance <= 0 OR ({t} > 0 AND s.known AND s.balance * s.days <= {t}::bigint * s.total))"

_WARN_SQL = f"""
INSERT INTO billing_shortagewarning (account_id, threshold, crossing, level, balance, days_left,
                                     created_at)
SELECT s.account_id, t.threshold, s.crossing, 0, s.balance, s.days_left, %(now)s
FROM shortage_state s
CROSS JOIN LATERAL unnest(s.thresholds) AS t(threshold)
WHERE {_UNDER.format(t="t.threshold")}
ON CONFLICT DO NOTHING
RETURNING id, account_id
"""  # noqa: S608 - constant SQL; values are parameters

_ESCALATE_SQL = f"""
INSERT INTO billing_shortagewarning (account_id, threshold, crossing, level, balance, days_left,
                                     created_at)
SELECT s.account_id, w.threshold, w.crossing, 1, s.balance, s.days_left, %(now)s
FROM shortage_state s
JOIN billing_shortagewarning w ON w.account_id = s.account_id AND w.crossing = s.crossing
     AND w.level = 0
WHERE s.parent_id IS NOT NULL
  AND w.created_at <= %(escalate_before)s
  AND w.threshold = ANY(s.thresholds)
  AND {_UNDER.format(t="w.threshold")}
ON CONFLICT DO NOTHING
RETURNING id, account_id
"""  # noqa: S608 - constant SQL; values are parameters


@dataclass(frozen=True)
class WarningRunResult:
    warnings: int
    escalations: int
    accounts: int
    notifications: int


@transaction.atomic
def shortage_warnings_run(*, as_of: dt.datetime, actor: Actor) -> WarningRunResult:
    """Warn every prepaid account that fell under a threshold, escalate the unresolved ones,
    and queue their notifications; running it again changes nothing until the state does.

    See the module docstring for days left, thresholds, crossings and levels.
    """
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS pg_temp.shortage_state")
        cursor.execute(
            _STATE_SQL,
            {
                "now": as_of,
                "default": list(settings.SHORTAGE_WARNING_THRESHOLDS),
                "days": AVERAGE_DAYS,
                # Local dates run from UTC-12 to UTC+14: a day either side covers them all.
                "first": as_of.date() - dt.timedelta(days=1),
                "last": as_of.date() + dt.timedelta(days=1),
            },
        )
        # Fresh statistics of the few short accounts steer the per-account lookups below.
        cursor.execute("ANALYZE pg_temp.shortage_state")
        cursor.execute(_CROSSING_SQL)
        cursor.execute(_WARN_SQL, {"now": as_of})
        warned = cursor.fetchall()
        cursor.execute(
            _ESCALATE_SQL,
            {"now": as_of, "escalate_before": as_of - settings.SHORTAGE_ESCALATION_AFTER},
        )
        escalated = cursor.fetchall()
        cursor.execute("DROP TABLE pg_temp.shortage_state")
    ids = [row[0] for row in (*warned, *escalated)]
    queued = warning_notices_queue(warning_ids=ids, as_of=as_of)
    accounts = len({row[1] for row in (*warned, *escalated)})
    result = WarningRunResult(
        warnings=len(warned), escalations=len(escalated), accounts=accounts, notifications=queued
    )
    if ids:
        audit_record(
            actor=actor,
            event=AuditEvent.SHORTAGE_WARNINGS_RUN,
            data={
                "as_of": as_of.isoformat(),
                "accounts": accounts,
                "warnings": len(warned),
                "escalations": len(escalated),
                "notifications": queued,
            },
        )
    return result


# --- Bill notices -------------------------------------------------------------------------


@transaction.atomic
def bill_notices_queue(*, as_of: dt.datetime, actor: Actor) -> int:
    """Queue "bill issued" and "bill overdue" notices of postpaid bills; return how many.

    Issued: regular bills (not credit notes) issued within BILL_NOTICE_LOOKBACK, even if already
    paid (the member still wants the bill). Overdue: regular bills still `issued` (not paid,
    not void) with a positive total whose due time has passed, within the lookback after it.
    Each goes once per bill, topic and member, through the same queue as the warnings, to the
    account's level-0 people (its payers and owners, and the managers of its organisation:
    corporate bills are paid by the organisation). The lookback keeps a first deployment from
    mailing old history. One audit entry when anything was queued.
    """
    since = as_of - settings.BILL_NOTICE_LOOKBACK
    regular = Bill.objects.filter(credit_note_for__isnull=True)
    issued = list(
        regular.filter(
            status__in=[Bill.Status.ISSUED, Bill.Status.PAID],
            issued_at__gt=since,
            issued_at__lte=as_of,
        ).values_list("id", flat=True)
    )
    overdue = list(
        regular.filter(
            status=Bill.Status.ISSUED, total__gt=0, due_at__lte=as_of, due_at__gt=since
        ).values_list("id", flat=True)
    )
    queued = bill_notices_queue_for(
        topic=Topic.BILL_ISSUED, bill_ids=issued, as_of=as_of
    ) + bill_notices_queue_for(topic=Topic.BILL_OVERDUE, bill_ids=overdue, as_of=as_of)
    if queued:
        audit_record(
            actor=actor,
            event=AuditEvent.BILL_NOTICES_QUEUED,
            data={"as_of": as_of.isoformat(), "notices": len(queued), "bills": len(set(queued))},
        )
    return len(queued)
