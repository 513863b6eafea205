"""Reconciliation of the ledger: every invariant of the money, checked from the stored rows.

Read-only. The database keeps these invariants as rows are written (migration billing 0002);
this check finds what a trigger cannot: rows changed behind its back (a superuser with
triggers off, a restored backup, a bug in a trigger) and links between the ledger and the
top-ups. Checks run in this order, each ordered by id, and the first violation is reported:

1. every journal entry has postings and they sum to zero;
2. every posting is in its entry's currency;
3. the postings of each currency sum to zero (the whole ledger balances);
4. each wallet's balance equals minus the sum of its ledger account's postings;
5. no payment is credited twice: a top-up has at most one `topup` entry (key `topup:<id>`),
   a settled top-up's entry credits its wallet with exactly its amount, and a top-up that
   was not paid has none;
6. no top-up has been refunded more than it paid.

Everything runs in one REPEATABLE READ snapshot, so a check is not fooled by postings
committed while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from billing.models import TopUp


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which check, and what was found."""

    check: str
    message: str


@dataclass
class VerifyReport:
    """What `ledger_verify` counted and the first violation, if any."""

    entries: int = 0
    postings: int = 0
    wallets: int = 0
    topups: int = 0
    violation: Violation | None = None
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.violation is None


def _first(sql: str, params: list[Any] | None = None) -> tuple[object, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


_SETTLED = [TopUp.Status.SUCCEEDED.value, TopUp.Status.REFUNDED.value]

# (check name, query returning the first offending row, message template)
_CHECKS: list[tuple[str, str, list[Any], str]] = [
    (
        "entry_balances",
        """
        SELECT e.id, coalesce(sum(p.amount), 0), count(p.id)
        FROM billing_journalentry e LEFT JOIN billing_posting p ON p.entry_id = e.id
        GROUP BY e.id HAVING coalesce(sum(p.amount), 0) <> 0 OR count(p.id) = 0
        ORDER BY e.id LIMIT 1
        """,
        [],
        "journal entry {0} does not balance: its {2} postings sum to {1}",
    ),
    (
        "entry_currency",
        """
        SELECT p.entry_id, p.id, a.code, e.currency
        FROM billing_posting p
        JOIN billing_journalentry e ON e.id = p.entry_id
        JOIN billing_ledgeraccount a ON a.id = p.ledger_account_id
        WHERE a.currency <> e.currency ORDER BY p.entry_id, p.id LIMIT 1
        """,
        [],
        "journal entry {0} in {3} has posting {1} on {2}, of another currency",
    ),
    (
        "global_sum",
        """
        SELECT a.currency, sum(p.amount)
        FROM billing_posting p JOIN billing_ledgeraccount a ON a.id = p.ledger_account_id
        GROUP BY a.currency HAVING sum(p.amount) <> 0 ORDER BY a.currency LIMIT 1
        """,
        [],
        "the postings in {0} sum to {1}, not zero",
    ),
    (
        "wallet_balance",
        """
        SELECT w.id, w.account_id, w.balance, -coalesce(s.total, 0)
        FROM billing_wallet w
        LEFT JOIN (SELECT ledger_account_id, sum(amount) AS total FROM billing_posting
                   GROUP BY ledger_account_id) s ON s.ledger_account_id = w.ledger_account_id
        WHERE w.balance <> -coalesce(s.total, 0) ORDER BY w.id LIMIT 1
        """,
        [],
        "wallet {0} (account {1}) has balance {2} but its postings make {3}",
    ),
    (
        "topup_credited_once",
        r"""
        SELECT t.id, count(e.id)
        FROM billing_topup t
        JOIN billing_journalentry e ON e.kind = 'topup'
             AND (e.idempotency_key = 'topup:' || t.id
                  OR e.idempotency_key LIKE 'topup:' || t.id || ':%%'
                  OR e.id = t.entry_id)
        GROUP BY t.id HAVING count(e.id) > 1 ORDER BY t.id LIMIT 1
        """,
        [],
        "top-up {0} is credited by {1} entries",
    ),
    (
        "topup_entry_matches",
        """
        SELECT t.id, t.status, t.entry_id, t.amount, coalesce(-sum(p.amount), 0)
        FROM billing_topup t
        JOIN billing_wallet w ON w.id = t.wallet_id
        LEFT JOIN billing_posting p ON p.entry_id = t.entry_id
             AND p.ledger_account_id = w.ledger_account_id
        GROUP BY t.id, t.status, t.entry_id, t.amount
        HAVING (t.status = ANY(%s) AND (t.entry_id IS NULL
                                         OR coalesce(-sum(p.amount), 0) <> t.amount))
            OR (NOT t.status = ANY(%s) AND t.entry_id IS NOT NULL)
        ORDER BY t.id LIMIT 1
        """,
        [_SETTLED, _SETTLED],
        "top-up {0} ({1}, entry {2}) of {3} credits its wallet with {4}",
    ),
    (
        "topup_refunds",
        r"""
        SELECT t.id, t.amount, sum(p.amount)
        FROM billing_topup t
        JOIN billing_wallet w ON w.id = t.wallet_id
        JOIN billing_journalentry e ON e.kind = 'refund'
             AND e.idempotency_key LIKE 'refund:' || t.id || ':%%'
        JOIN billing_posting p ON p.entry_id = e.id AND p.ledger_account_id = w.ledger_account_id
        GROUP BY t.id, t.amount HAVING sum(p.amount) > t.amount ORDER BY t.id LIMIT 1
        """,
        [],
        "top-up {0} of {1} was refunded {2}",
    ),
]


def ledger_verify() -> VerifyReport:
    """Check every ledger invariant (module docstring) and return the counts and the first
    violation found; changes nothing."""
    report = VerifyReport()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            # Only possible as the first statement of a transaction; inside a caller's
            # transaction (tests) the snapshot is the caller's.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = _first(
            "SELECT (SELECT count(*) FROM billing_journalentry),"
            " (SELECT count(*) FROM billing_posting),"
            " (SELECT count(*) FROM billing_wallet),"
            " (SELECT count(*) FROM billing_topup)"
        )
        if counts is not None:
            report.entries, report.postings, report.wallets, report.topups = (
                int(str(c)) for c in counts
            )
        for check, sql, params, template in _CHECKS:
            row = _first(sql, params)
            if row is not None:
                report.violation = Violation(check=check, message=template.format(*row))
                break
    return report
