"""Postpaid bills: bill runs, and one bill created, issued, paid or voided.

How a month is priced into lines is in billing.services.bill_drafting, how bills are numbered
in billing.services.bill_numbers, and how issuing posts to the ledger in
billing.services.bill_issuing; each states the decisions it takes.

- **Void** never deletes: the bill becomes `void` and a credit note (a bill with the negated
  lines, `credit_note_for` the voided bill) is issued with its own number. A voided period is
  not billed again by a run (one regular bill per account and period); corrections go on the
  next bill as adjustments.
- **Bill runs** are idempotent: one `BillRun` per month; a finished run is returned as it is;
  an interrupted one resumes, skipping the accounts already billed (a unique constraint allows
  one regular bill per account and period; chunks lock the run's row, so two workers never
  price the same chunk). Each chunk of accounts is one transaction: usage read in one query,
  priced in Python, bills, lines, numbers and ledger entries written by a few set-wise
  statements.
- **Audit**: a run records one entry (`bill_run.finish`, with its counts), not one per bill;
  `bill_create`, `bill_issue`, `bill_mark_paid` and `bill_void` record one entry per bill.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

from django.db import connection, transaction
from django.utils.translation import gettext_lazy as _

from billing.exceptions import BillError
from billing.models import Bill, BillLine, BillRun, JournalEntry, LedgerAccount
from billing.selectors import postpaid_accounts_for_month
from billing.services.bill_drafting import (
    _account_row,
    _AccountRow,
    _check_month,
    _insert_drafts,
    _LineDraft,
    _price_chunk,
)
from billing.services.bill_issuing import (
    _draft_of,
    _due,
    _issue_key,
    _mark_issued,
    _post_issues,
    _receivables,
    _to_number,
)
from billing.services.bill_numbers import _ToNumber
from billing.services.ledger import journal_post, ledger_account_get
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.money import format_minor, from_minor
from portal.tenancy.models import Account

DEFAULT_CHUNK = 1000
PAYMENT_CLEARING_KEY = "bill-payments"


# --- Bill runs ----------------------------------------------------------------------------------


def bill_run_execute(
    *,
    period_start: dt.date,
    actor: Actor,
    as_of: dt.datetime,
    chunk_size: int = DEFAULT_CHUNK,
) -> BillRun:
    """Bill and issue every postpaid account for the month starting `period_start`.

    Idempotent: the month's run is created once; running it again after it finished changes
    nothing, and an interrupted run resumes where it stopped. Accounts without a tariff for the
    month, or whose tariff cannot price it, are counted as skipped.

    :raises BillError: when `period_start` is not the first day of a month.
    """
    period_end = _check_month(period_start)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_billrun (period_start, period_end, status, bills, skipped, "
            "error, started_at, created_by_label) VALUES (%s, %s, %s, 0, 0, '', %s, %s) "
            "ON CONFLICT (period_start) DO NOTHING",
            [period_start, period_end, BillRun.Status.RUNNING, as_of, actor.label[:254]],
        )
    run = BillRun.objects.get(period_start=period_start)
    if run.status == BillRun.Status.DONE:
        return run
    billed = Bill.objects.filter(period_start=period_start, credit_note_for__isnull=True)
    todo = list(
        postpaid_accounts_for_month(period_start=period_start)
        .exclude(pk__in=billed.values("account_id"))
        .order_by("time_zone", "pk")
        .values_list("pk", "number", "currency", "time_zone", "organisation_id")
    )
    by_zone: dict[str, list[_AccountRow]] = defaultdict(list)
    for row in todo:
        by_zone[row[3]].append(_AccountRow(*row))
    problems: dict[int, str] = {}
    try:
        for zone_name, accounts in by_zone.items():
            for i in range(0, len(accounts), chunk_size):
                problems.update(
                    _run_chunk(
                        run,
                        accounts=accounts[i : i + chunk_size],
                        zone_name=zone_name,
                        period_end=period_end,
                        as_of=as_of,
                        actor=actor,
                    )
                )
    except Exception as exc:
        BillRun.objects.filter(pk=run.pk).update(
            status=BillRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    with transaction.atomic():
        run = BillRun.objects.select_for_update().get(pk=run.pk)
        if run.status == BillRun.Status.DONE:  # finished meanwhile by another worker
            return run
        run.bills = Bill.objects.filter(run=run).count()
        run.skipped = (
            postpaid_accounts_for_month(period_start=period_start)
            .exclude(pk__in=billed.values("account_id"))
            .count()
        )
        run.status = BillRun.Status.DONE
        run.finished_at = as_of
        run.error = "\n".join(f"account {acc}: {msg}" for acc, msg in problems.items())[:2000]
        run.save(update_fields=["bills", "skipped", "status", "finished_at", "error"])
        audit_record(
            actor=actor,
            event=AuditEvent.BILL_RUN_FINISHED,
            target=run,
            data={"period": f"{period_start:%Y-%m}", "bills": run.bills, "skipped": run.skipped},
        )
    return run


def _run_chunk(
    run: BillRun,
    *,
    accounts: Sequence[_AccountRow],
    zone_name: str,
    period_end: dt.date,
    as_of: dt.datetime,
    actor: Actor,
) -> dict[int, str]:
    with transaction.atomic():
        # Serialises workers on the same run: the second finds these accounts billed.
        BillRun.objects.select_for_update().filter(pk=run.pk).first()
        drafts, problems = _price_chunk(accounts, run.period_start, period_end, zone_name)
        created = _insert_drafts(
            drafts, period_start=run.period_start, period_end=period_end, run_id=run.pk, as_of=as_of
        )
        if created:
            numbers = _mark_issued(
                [
                    _ToNumber(bill_id, d.account.organisation_id, d.account.number, zone_name)
                    for bill_id, d in created
                ],
                as_of=as_of,
                due=_due(as_of),
            )
            _post_issues(
                [(bill_id, numbers[bill_id], d) for bill_id, d in created],
                as_of=as_of,
                actor_label=actor.label,
            )
    return problems


# --- One bill -----------------------------------------------------------------------------------


@transaction.atomic
def bill_create(
    *,
    account: Account,
    period_start: dt.date,
    actor: Actor,
    as_of: dt.datetime,
    adjustments: Sequence[tuple[str, int]] = (),
) -> Bill:
    """Draft the bill of one postpaid account for one month, outside a run.

    `adjustments` are (label, amount in minor units) lines added as stated, untaxed.

    :raises BillError: for a prepaid account, a period that is not a month, an account already
        billed for the period, no tariff for the month, or an adjustment without a label.
    """
    period_end = _check_month(period_start)
    if account.payment_mode != Account.PaymentMode.POSTPAID:
        raise BillError(_("Only postpaid accounts get bills."))
    for label, amount in adjustments:
        if not label.strip() or not amount:
            raise BillError(_("An adjustment needs a label and a non-zero amount."))
    row = _account_row(account)
    drafts, problems = _price_chunk([row], period_start, period_end, account.time_zone)
    if problems:
        raise BillError(_("The account cannot be priced: %s") % problems[account.pk])
    if not drafts:
        raise BillError(_("The account has no tariff for this month."))
    draft = drafts[0]
    tax_lines = [line for line in draft.lines if line.kind == BillLine.Kind.TAX]
    draft.lines = [line for line in draft.lines if line.kind != BillLine.Kind.TAX]
    for label, amount in adjustments:
        draft.lines.append(
            _LineDraft(
                BillLine.Kind.ADJUSTMENT,
                None,
                label.strip()[:200],
                "",
                Decimal(1),
                "",
                from_minor(amount, account.currency),
                amount,
                False,
                "adjustments",
            )
        )
    draft.lines.extend(tax_lines)
    created = _insert_drafts(
        [draft], period_start=period_start, period_end=period_end, run_id=None, as_of=as_of
    )
    if not created:
        raise BillError(_("The account already has a bill for this month."))
    bill = Bill.objects.select_related("account").get(pk=created[0][0])
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_CREATED,
        account=account,
        target=bill,
        data={
            "number": account.number,
            "period": f"{period_start:%Y-%m}",
            "total": format_minor(bill.total, bill.currency),
        },
    )
    return bill


def _locked(bill: Bill) -> Bill:
    return Bill.objects.select_for_update().select_related("account").get(pk=bill.pk)


@transaction.atomic
def bill_issue(*, bill: Bill, actor: Actor, as_of: dt.datetime) -> Bill:
    """Give a draft bill the next number of its organisation, post it and make it issued.

    :raises BillError: when the bill is not a draft.
    """
    bill = _locked(bill)
    if bill.status != Bill.Status.DRAFT:
        raise BillError(_("Only a draft bill can be issued."))
    numbers = _mark_issued([_to_number(bill)], as_of=as_of, due=_due(as_of))
    _post_issues(
        [(bill.pk, numbers[bill.pk], _draft_of(bill))], as_of=as_of, actor_label=actor.label
    )
    bill.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_ISSUED,
        account=bill.account,
        target=bill,
        data={
            "bill": bill.number,
            "number": bill.account.number,
            "total": format_minor(bill.total, bill.currency),
        },
    )
    return bill


@transaction.atomic
def bill_mark_paid(
    *, bill: Bill, actor: Actor, as_of: dt.datetime, paid_at: dt.datetime | None = None
) -> Bill:
    """Record that an issued bill was paid in full: clearing debited, receivable credited.

    :raises BillError: when the bill is not issued, or is a credit note.
    """
    bill = _locked(bill)
    if bill.status != Bill.Status.ISSUED or bill.credit_note_for_id is not None:
        raise BillError(_("Only an issued bill can be marked paid."))
    bill.status = Bill.Status.PAID
    bill.paid_at = paid_at or as_of
    bill.save(update_fields=["status", "paid_at"])
    if bill.total:
        receivable = _receivables([bill.account_id], bill.currency)[bill.account_id]
        clearing = ledger_account_get(
            kind=LedgerAccount.Kind.CLEARING, currency=bill.currency, key=PAYMENT_CLEARING_KEY
        )
        journal_post(
            kind=JournalEntry.Kind.BILL_PAYMENT,
            currency=bill.currency,
            memo=f"payment of bill {bill.number} of account {bill.account.number}",
            idempotency_key=f"bill:{bill.pk}:payment",
            postings=[(clearing.pk, bill.total), (receivable, -bill.total)],
            effective_date=bill.paid_at.date(),
            created_by_label=actor.label,
            as_of=as_of,
            account_id=bill.account_id,
        )
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_PAID,
        account=bill.account,
        target=bill,
        data={"bill": bill.number, "number": bill.account.number},
    )
    return bill


@transaction.atomic
def bill_void(*, bill: Bill, reason: str, actor: Actor, as_of: dt.datetime) -> Bill:
    """Void an issued or paid bill: keep it, issue a credit note with its lines negated, and
    reverse its ledger entry. Return the credit note.

    :raises BillError: for an empty reason, a draft, a bill already void, or a credit note.
    """
    reason = reason.strip()
    if not reason:
        raise BillError(_("Voiding a bill needs a reason."))
    bill = _locked(bill)
    if bill.credit_note_for_id is not None:
        raise BillError(_("A credit note cannot be voided."))
    if bill.status not in (Bill.Status.ISSUED, Bill.Status.PAID):
        raise BillError(_("Only an issued or paid bill can be voided."))
    note = Bill.objects.create(
        account=bill.account,
        organisation=bill.organisation,
        period_start=bill.period_start,
        period_end=bill.period_end,
        currency=bill.currency,
        subtotal=-bill.subtotal,
        tax=-bill.tax,
        total=-bill.total,
        has_estimates=bill.has_estimates,
        credit_note_for=bill,
        created_at=as_of,
    )
    BillLine.objects.bulk_create(
        BillLine(
            bill=note,
            position=line.position,
            kind=line.kind,
            service_point_id=line.service_point_id,
            label=line.label,
            band=line.band,
            quantity=-line.quantity,
            unit=line.unit,
            unit_price=line.unit_price,
            amount=-line.amount,
            estimated=line.estimated,
        )
        for line in bill.lines.all()
    )
    # A credit note is settled against the receivable at once: nothing falls due.
    _mark_issued([_to_number(note)], as_of=as_of, due=None)
    issue_entry = JournalEntry.objects.filter(idempotency_key=_issue_key(bill.pk)).first()
    if issue_entry is not None:
        journal_post(
            kind=JournalEntry.Kind.REVERSAL,
            currency=bill.currency,
            memo=f"void of bill {bill.number}: {reason}",
            idempotency_key=f"bill:{bill.pk}:void",
            postings=[(p.ledger_account_id, -p.amount) for p in issue_entry.postings.all()],
            effective_date=as_of.date(),
            created_by_label=actor.label,
            as_of=as_of,
            account_id=bill.account_id,
            reverses_id=issue_entry.pk,
        )
    bill.status = Bill.Status.VOID
    bill.voided_at = as_of
    bill.void_reason = reason[:300]
    bill.save(update_fields=["status", "voided_at", "void_reason"])
    note.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_VOIDED,
        account=bill.account,
        target=bill,
        data={
            "bill": bill.number,
            "number": bill.account.number,
            "credit_note": note.number,
            "reason": reason[:300],
        },
    )
    return note


@transaction.atomic
def bill_pdf_download_record(*, bill: Bill, actor: Actor, language: str) -> None:
    """Audit that `actor` was handed the bill's PDF: a member on the portal, or staff in the
    admin (a staff read of personal data)."""
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_PDF_DOWNLOADED,
        account=bill.account,
        target=bill,
        data={
            "bill": bill.number or "draft",
            "number": bill.account.number,
            "language": language,
        },
    )
