"""Issuing bills: numbering drafts, making them issued and posting them to the ledger.

- **Ledger**: issuing debits `receivable:<account>` with the total and credits revenue (per
  utility kind, as prepaid charges do), adjustments and tax. A payment debits the clearing
  account `clearing:bill-payments` and credits the receivable. Voiding posts the reversal of the
  issue entry (so a paid bill that is voided leaves the customer in credit on the receivable).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import connection
from django.utils.translation import gettext_lazy as _

from billing.exceptions import BillError
from billing.models import Bill, BillLine, JournalEntry, LedgerAccount
from billing.services.bill_drafting import _account_row, _BillDraft, _LineDraft
from billing.services.bill_numbers import (
    _take_numbers,
    _ToNumber,
    bill_number_format,
    bill_payment_reference,
)
from billing.services.ledger import ledger_account_get
from meters.models import ServicePoint


def _mark_issued(
    bills: Sequence[_ToNumber], *, as_of: dt.datetime, due: dt.datetime | None
) -> dict[int, str]:
    """Number draft bills in id order and make them issued; return their printed numbers.

    The year in a number is the year of issue in the account's time zone.
    """
    ordered = sorted(bills, key=lambda b: b.bill_id)
    taken = _take_numbers([b.organisation_id for b in ordered])
    printed: dict[int, str] = {}
    sequence_numbers, references = [], []
    for bill, (prefix, sequence_number) in zip(ordered, taken, strict=True):
        year = as_of.astimezone(zoneinfo.ZoneInfo(bill.time_zone)).year
        number = bill_number_format(prefix=prefix, year=year, sequence_number=sequence_number)
        printed[bill.bill_id] = number
        sequence_numbers.append(sequence_number)
        references.append(
            bill_payment_reference(account_number=bill.account_number, bill_number=number)
        )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE billing_bill b SET status = 'issued', sequence_number = v.s, number = v.n,
                payment_reference = v.r, issued_at = %s, due_at = %s
            FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS v(id, s, n, r)
            WHERE b.id = v.id AND b.status = 'draft'
            """,
            [
                as_of,
                due,
                [b.bill_id for b in ordered],
                sequence_numbers,
                [printed[b.bill_id] for b in ordered],
                references,
            ],
        )
        if cursor.rowcount != len(ordered):
            raise BillError(_("Only a draft bill can be issued."))
    return printed


def _receivables(account_ids: Iterable[int], currency: str) -> dict[int, int]:
    """Ledger account ids of the accounts' receivables, created set-wise on first use."""
    codes = {
        account_id: f"{LedgerAccount.Kind.RECEIVABLE}:{account_id}:{currency}"
        for account_id in account_ids
    }
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_ledgeraccount (code, kind, currency, name)
            SELECT c, %s, %s, replace(c, ':', ' ') FROM unnest(%s::text[]) AS t(c)
            ON CONFLICT (code) DO NOTHING
            """,
            [LedgerAccount.Kind.RECEIVABLE, currency, list(codes.values())],
        )
        cursor.execute(
            "SELECT code, id FROM billing_ledgeraccount WHERE code = ANY(%s)",
            [list(codes.values())],
        )
        ids = dict(cursor.fetchall())
    return {account_id: ids[code] for account_id, code in codes.items()}


def _issue_postings(
    draft: _BillDraft, receivable: int, ledgers: dict[tuple[str, str], int]
) -> list[tuple[int, int]]:
    """Receivable debited with the total; revenue per utility kind, adjustments, tax credited."""
    currency = draft.account.currency
    credits: dict[int, int] = defaultdict(int)
    for line in draft.lines:
        if line.ledger_key == "tax":
            key = (LedgerAccount.Kind.TAX, "")
        elif line.ledger_key == "adjustments":
            key = (LedgerAccount.Kind.ADJUSTMENTS, "")
        else:
            key = (LedgerAccount.Kind.REVENUE, line.ledger_key)
        if (key[0], key[1] + currency) not in ledgers:
            ledgers[(key[0], key[1] + currency)] = ledger_account_get(
                kind=key[0], currency=currency, key=key[1]
            ).pk
        credits[ledgers[(key[0], key[1] + currency)]] -= line.amount
    postings = [(receivable, draft.subtotal + draft.tax), *credits.items()]
    return [(ledger, amount) for ledger, amount in postings if amount]


def _post_issues(
    issued: Sequence[tuple[int, str, _BillDraft]], *, as_of: dt.datetime, actor_label: str
) -> None:
    """One BILL journal entry per issued bill (id, number, draft), set-wise."""
    by_currency: dict[str, list[int]] = defaultdict(list)
    for _id, _n, draft in issued:
        by_currency[draft.account.currency].append(draft.account.pk)
    receivables: dict[tuple[int, str], int] = {}
    for currency, account_ids in by_currency.items():
        for account_id, ledger in _receivables(account_ids, currency).items():
            receivables[(account_id, currency)] = ledger
    ledgers: dict[tuple[str, str], int] = {}
    entries: list[tuple[int, str, _BillDraft, list[tuple[int, int]]]] = []
    for bill_id, number, draft in issued:
        postings = _issue_postings(
            draft, receivables[(draft.account.pk, draft.account.currency)], ledgers
        )
        if postings:
            entries.append((bill_id, number, draft, postings))
    if not entries:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_journalentry (kind, account_id, currency, memo, idempotency_key,
                effective_date, created_at, created_by_label)
            SELECT %s, a, c, m, k, %s, %s, %s
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS v(a, c, m, k)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING idempotency_key, id
            """,
            [
                JournalEntry.Kind.BILL,
                as_of.date(),
                as_of,
                actor_label[:254],
                [draft.account.pk for _, _, draft, _ in entries],
                [draft.account.currency for _, _, draft, _ in entries],
                [
                    f"bill {number} of account {draft.account.number}"
                    for _, number, draft, _ in entries
                ],
                [_issue_key(bill_id) for bill_id, _, _, _ in entries],
            ],
        )
        entry_ids = dict(cursor.fetchall())
        rows = [
            (entry_ids[_issue_key(bill_id)], ledger, amount)
            for bill_id, _, _, postings in entries
            if _issue_key(bill_id) in entry_ids
            for ledger, amount in postings
        ]
        if rows:
            # One statement for all entries: the ledger trigger checks each entry balances.
            cursor.execute(
                "INSERT INTO billing_posting (entry_id, ledger_account_id, amount) "
                "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])",
                [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
            )


def _issue_key(bill_id: int) -> str:
    return f"bill:{bill_id}:issue"


def _due(as_of: dt.datetime) -> dt.datetime:
    return as_of + dt.timedelta(days=settings.BILLING_DUE_DAYS)


def _draft_of(bill: Bill) -> _BillDraft:
    """A stored bill as a draft again, for posting it (lines with their ledger keys)."""
    kinds = dict(
        ServicePoint.objects.filter(
            pk__in={line.service_point_id for line in bill.lines.all() if line.service_point_id}
        ).values_list("pk", "kind")
    )
    draft = _BillDraft(_account_row(bill.account))
    for line in bill.lines.all():
        if line.kind == BillLine.Kind.TAX:
            key = "tax"
        elif line.kind == BillLine.Kind.ADJUSTMENT or line.service_point_id is None:
            key = "adjustments"
        else:
            key = kinds[line.service_point_id]
        draft.lines.append(
            _LineDraft(
                line.kind,
                line.service_point_id,
                line.label,
                line.band,
                line.quantity,
                line.unit,
                line.unit_price,
                line.amount,
                line.estimated,
                key,
            )
        )
    return draft


def _to_number(bill: Bill) -> _ToNumber:
    return _ToNumber(bill.pk, bill.organisation_id, bill.account.number, bill.account.time_zone)
