"""Reads of shortage warnings and notifications: who is told, and what a member chose.

The recipient rule lives here once, as SQL, so that the set-wise inserts of the warning run
and of the bill notices and the per-account function the portal and tests use cannot drift.
"""

from __future__ import annotations

from django.db import connection

from billing.models import Notification, NotificationPreference
from portal.tenancy.roles import Role

# Who hears about an account, by escalation level. Input: a relation
# `targets(ref_id, account_id, level)`; output rows: (ref_id, account_id, user_id).
#
# Level 0, the account's own people:
#   - members of the account who may top up or pay it (payer, manager, owner; viewers only
#     look), and
#   - the managers and owners of the account's own organisation (a subsidiary manages its
#     own accounts).
# Level 1, one level up: the managers and owners of the organisation directly above the
# account's organisation (a group's managers for a subsidiary's account). Nobody further up;
# a household (no organisation) or a top-level organisation's account has no level 1.
# Members of siblings never appear: memberships are matched by exact organisation id, not by
# subtree.
RECIPIENTS_SQL = f"""
    SELECT t.ref_id, t.account_id, m.user_id
    FROM targets t
    JOIN tenancy_membership m ON m.account_id = t.account_id AND m.role <= {int(Role.PAYER)}
    WHERE t.level = 0
    UNION
    SELECT t.ref_id, t.account_id, m.user_id
    FROM targets t
    JOIN tenancy_account a ON a.id = t.account_id
    JOIN tenancy_membership m ON m.organisation_id = a.organisation_id
         AND m.role <= {int(Role.MANAGER)}
    WHERE t.level = 0
    UNION
    SELECT t.ref_id, t.account_id, m.user_id
    FROM targets t
    JOIN tenancy_account a ON a.id = t.account_id
    JOIN tenancy_organisation o ON o.id = a.organisation_id
    JOIN tenancy_membership m ON m.organisation_id = o.parent_id
         AND m.role <= {int(Role.MANAGER)}
    WHERE t.level = 1
"""  # noqa: S608 - constant SQL; values are parameters


def notification_recipient_ids(*, account_id: int, level: int) -> list[int]:
    """Return the ids of the active users told about `account_id` at escalation `level`.

    Level 0 is the first warning (and every bill notice), level 1 the escalation 24 hours on;
    see RECIPIENTS_SQL for the rule.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH targets AS (SELECT 0 AS ref_id, %s::bigint AS account_id, %s AS level),
                 recipients AS ({RECIPIENTS_SQL})
            SELECT r.user_id FROM recipients r
            JOIN users_user u ON u.id = r.user_id AND u.is_active
            ORDER BY r.user_id
            """,  # noqa: S608 - constant SQL, values are parameters
            [account_id, level],
        )
        return [row[0] for row in cursor.fetchall()]


def notification_preference_for(*, user_id: int, topic: str) -> NotificationPreference | None:
    """Return the member's stored preference for a topic (None: the defaults apply)."""
    return NotificationPreference.objects.filter(user_id=user_id, topic=topic).first()


def notifications_for_account(*, account_id: int, limit: int = 50) -> list[Notification]:
    """Return the account's latest notifications, newest first, for its members' history."""
    return list(
        Notification.objects.filter(account_id=account_id)
        .select_related("user", "warning", "bill")
        .order_by("-created_at", "-id")[:limit]
    )
