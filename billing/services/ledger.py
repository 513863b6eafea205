"""The double-entry ledger: wallets, journal entries, reversals, adjustments.

Sign convention: a posting's amount is a debit when positive and a credit when negative, in
minor units. A wallet is the utility's debt to the customer, so money paid in is a credit to
the wallet (its balance, the negated sum of its postings, rises) and a charge is a debit.
The database keeps `Wallet.balance` equal to that sum (see migration billing 0002).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import IntegrityError, connection, transaction

from billing.exceptions import BillingError
from billing.models import JournalEntry, LedgerAccount, Wallet
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.money import format_minor
from portal.tenancy.models import Account


class LedgerError(BillingError, ValueError):
    """A ledger operation that cannot be done; the message says why."""


def ledger_account_get(*, kind: str, currency: str, key: str = "") -> LedgerAccount:
    """Return (creating on first use) the ledger account `kind:key:currency`."""
    code = ":".join(part for part in (kind, key, currency) if part)
    found = LedgerAccount.objects.filter(code=code).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(
                code=code, kind=kind, currency=currency, name=code.replace(":", " ")
            )
    except IntegrityError:  # created meanwhile by a concurrent transaction
        return LedgerAccount.objects.get(code=code)


@transaction.atomic
def wallet_create(*, account: Account, actor: Actor, emergency_credit: int = 0) -> Wallet:
    """Open the wallet of a prepaid account (the same account again returns its wallet).

    :raises LedgerError: for a postpaid account or a negative emergency credit.
    """
    existing = Wallet.objects.filter(account=account).first()
    if existing is not None:
        return existing
    if account.payment_mode != Account.PaymentMode.PREPAID:
        raise LedgerError("only prepaid accounts have a wallet")
    if emergency_credit < 0:
        raise LedgerError("emergency credit cannot be negative")
    ledger = ledger_account_get(
        kind=LedgerAccount.Kind.WALLET, currency=account.currency, key=str(account.pk)
    )
    wallet = Wallet.objects.create(
        account=account,
        ledger_account=ledger,
        currency=account.currency,
        emergency_credit=emergency_credit,
    )
    audit_record(
        actor=actor,
        event=AuditEvent.WALLET_CREATED,
        account=account,
        target=wallet,
        data={"number": account.number, "currency": account.currency},
    )
    return wallet


@transaction.atomic
def wallet_update(*, wallet: Wallet, emergency_credit: int, actor: Actor) -> Wallet:
    """Change a wallet's emergency credit.

    :raises LedgerError: for a negative emergency credit.
    """
    if emergency_credit < 0:
        raise LedgerError("emergency credit cannot be negative")
    locked = (
        Wallet.objects.select_for_update(of=("self",)).select_related("account").get(pk=wallet.pk)
    )
    before = locked.emergency_credit
    locked.emergency_credit = emergency_credit
    locked.save(update_fields=["emergency_credit", "updated_at"])
    audit_record(
        actor=actor,
        event=AuditEvent.WALLET_UPDATED,
        account=locked.account,
        target=locked,
        data={
            "number": locked.account.number,
            "emergency_credit": {
                "before": format_minor(before, locked.currency),
                "after": format_minor(emergency_credit, locked.currency),
            },
        },
    )
    return locked


def journal_post(
    *,
    kind: str,
    currency: str,
    memo: str,
    idempotency_key: str,
    postings: Sequence[tuple[int, int]],
    effective_date: dt.date,
    created_by_label: str,
    as_of: dt.datetime,
    account_id: int | None = None,
    reverses_id: int | None = None,
) -> tuple[JournalEntry, bool]:
    """Post one balanced entry inside the caller's transaction; return it and whether it is new.

    `postings` are (ledger account id, amount) pairs; zero amounts are left out. The same
    idempotency key again posts nothing and returns the first entry.

    :raises LedgerError: when the postings do not sum to zero or all are zero.
    """
    if not connection.in_atomic_block:
        raise LedgerError("journal_post runs inside the caller's transaction")
    lines = [(ledger_id, amount) for ledger_id, amount in postings if amount]
    if not lines or sum(amount for _, amount in lines) != 0:
        raise LedgerError("a journal entry needs non-zero postings that sum to zero")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_journalentry (kind, account_id, currency, memo, idempotency_key,
                reverses_id, effective_date, created_at, created_by_label)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
            """,
            [
                kind,
                account_id,
                currency,
                memo[:300],
                idempotency_key,
                reverses_id,
                effective_date,
                as_of,
                created_by_label[:254],
            ],
        )
        row = cursor.fetchone()
        if row is None:
            return JournalEntry.objects.get(idempotency_key=idempotency_key), False
        cursor.execute(
            "INSERT INTO billing_posting (entry_id, ledger_account_id, amount) "
            "SELECT %s, l, a FROM unnest(%s::bigint[], %s::bigint[]) AS t(l, a)",
            [row[0], [ledger for ledger, _ in lines], [amount for _, amount in lines]],
        )
    return JournalEntry.objects.get(pk=row[0]), True


@transaction.atomic
def journal_reverse(
    *, entry: JournalEntry, reason: str, actor: Actor, as_of: dt.datetime
) -> JournalEntry:
    """Post the mirror image of `entry` (each posting negated); an entry is reversed once.

    :raises LedgerError: for a reversal of a reversal, a second reversal or an empty reason.
    """
    if not reason.strip():
        raise LedgerError("a reversal needs a reason")
    if entry.kind == JournalEntry.Kind.REVERSAL:
        raise LedgerError("a reversal is not reversed; post a new entry instead")
    if JournalEntry.objects.filter(reverses=entry).exists():
        raise LedgerError("this entry has already been reversed")
    postings = [(p.ledger_account_id, -p.amount) for p in entry.postings.all()]
    reversal, _new = journal_post(
        kind=JournalEntry.Kind.REVERSAL,
        currency=entry.currency,
        memo=f"reversal of #{entry.pk}: {reason.strip()}",
        idempotency_key=f"reversal:{entry.pk}",
        postings=postings,
        effective_date=as_of.date(),
        created_by_label=actor.label,
        as_of=as_of,
        account_id=entry.account_id,
        reverses_id=entry.pk,
    )
    audit_record(
        actor=actor,
        event=AuditEvent.LEDGER_REVERSED,
        account=entry.account,
        target=reversal,
        data={"entry": entry.pk, "reason": reason.strip()[:300]},
    )
    return reversal


@transaction.atomic
def wallet_adjust(
    *,
    wallet: Wallet,
    amount: int,
    reason: str,
    idempotency_key: str,
    actor: Actor,
    as_of: dt.datetime,
) -> JournalEntry:
    """Credit (positive `amount`) or debit (negative) a wallet by staff decision, with a reason.

    :raises LedgerError: for a zero amount or an empty reason.
    """
    if not amount:
        raise LedgerError("an adjustment needs a non-zero amount")
    if not reason.strip():
        raise LedgerError("an adjustment needs a reason")
    account = wallet.account
    adjustments = ledger_account_get(kind=LedgerAccount.Kind.ADJUSTMENTS, currency=wallet.currency)
    entry, new = journal_post(
        kind=JournalEntry.Kind.ADJUSTMENT,
        currency=wallet.currency,
        memo=reason.strip(),
        idempotency_key=f"adjustment:{idempotency_key}",
        postings=[(wallet.ledger_account_id, -amount), (adjustments.pk, amount)],
        effective_date=as_of.date(),
        created_by_label=actor.label,
        as_of=as_of,
        account_id=account.pk,
    )
    if new:
        audit_record(
            actor=actor,
            event=AuditEvent.WALLET_ADJUSTED,
            account=account,
            target=entry,
            data={
                "number": account.number,
                "amount": format_minor(amount, wallet.currency),
                "reason": reason.strip()[:300],
            },
        )
    return entry
