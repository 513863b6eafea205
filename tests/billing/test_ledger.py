"""The ledger's invariants hold in the database, whatever code writes the rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing.models import JournalEntry, LedgerAccount, Posting, Wallet
from billing.services.ledger import (
    LedgerError,
    journal_post,
    journal_reverse,
    ledger_account_get,
    wallet_adjust,
    wallet_create,
)
from tests.factories import SYSTEM, make_account

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)


def _wallet() -> Wallet:
    return wallet_create(account=make_account(), actor=SYSTEM)


def _postings_sum(wallet: Wallet) -> int:
    return -sum(p.amount for p in Posting.objects.filter(ledger_account=wallet.ledger_account))


def _credit(wallet: Wallet, amount: int, key: str) -> JournalEntry:
    clearing = ledger_account_get(kind="clearing", currency=wallet.currency, key="test")
    with transaction.atomic():
        entry, _ = journal_post(
            kind="topup",
            currency=wallet.currency,
            memo="test credit",
            idempotency_key=key,
            postings=[(wallet.ledger_account_id, -amount), (clearing.pk, amount)],
            effective_date=NOW.date(),
            created_by_label="test",
            as_of=NOW,
            account_id=wallet.account_id,
        )
    return entry


def test_a_posting_moves_the_balance_and_the_same_key_posts_nothing() -> None:
    wallet = _wallet()
    _credit(wallet, 500_00, "k1")
    _credit(wallet, 500_00, "k1")
    wallet.refresh_from_db()
    assert wallet.balance == 500_00 == _postings_sum(wallet)
    assert JournalEntry.objects.filter(idempotency_key="k1").count() == 1


def test_unbalanced_postings_are_refused_by_the_database() -> None:
    wallet = _wallet()
    with pytest.raises(LedgerError), transaction.atomic():
        journal_post(
            kind="topup",
            currency=wallet.currency,
            memo="x",
            idempotency_key="bad",
            postings=[(wallet.ledger_account_id, -5)],
            effective_date=NOW.date(),
            created_by_label="test",
            as_of=NOW,
        )
    entry = _credit(wallet, 100, "k2")
    # Written around the service: the trigger refuses it all the same.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_journalentry (kind, currency, memo, idempotency_key, "
            "effective_date, created_at, created_by_label) VALUES "
            "('adjustment', %s, 'raw', 'raw', %s, %s, 'raw') RETURNING id",
            [wallet.currency, NOW.date(), NOW],
        )
        (entry_id,) = cursor.fetchone()
        with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
            cursor.execute(
                "INSERT INTO billing_posting (entry_id, ledger_account_id, amount) "
                "VALUES (%s, %s, 7)",
                [entry_id, wallet.ledger_account_id],
            )
    # Nor can postings be added to an entry that is already posted.
    other = ledger_account_get(kind="adjustments", currency=wallet.currency)
    add_to_posted = (
        "INSERT INTO billing_posting (entry_id, ledger_account_id, amount) "
        "VALUES (%s, %s, 7), (%s, %s, -7)"
    )
    params = [entry.pk, wallet.ledger_account_id, entry.pk, other.pk]
    with (
        connection.cursor() as cursor,
        pytest.raises(IntegrityError, match="already posted"),
        transaction.atomic(),
    ):
        cursor.execute(add_to_posted, params)


def test_postings_entries_and_balances_cannot_be_rewritten() -> None:
    wallet = _wallet()
    entry = _credit(wallet, 100, "k3")
    for statement, params in [
        ("UPDATE billing_posting SET amount = amount * 2 WHERE entry_id = %s", [entry.pk]),
        ("DELETE FROM billing_posting WHERE entry_id = %s", [entry.pk]),
        ("UPDATE billing_journalentry SET memo = 'x' WHERE id = %s", [entry.pk]),
        ("DELETE FROM billing_journalentry WHERE id = %s", [entry.pk]),
        ("UPDATE billing_wallet SET balance = 10 WHERE id = %s", [wallet.pk]),
    ]:
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, params)
    wallet.refresh_from_db()
    assert wallet.balance == 100 == _postings_sum(wallet)


def test_a_reversal_mirrors_the_entry_once_and_an_adjustment_needs_a_reason() -> None:
    wallet = _wallet()
    entry = _credit(wallet, 250, "k4")
    journal_reverse(entry=entry, reason="paid twice by mistake", actor=SYSTEM, as_of=NOW)
    wallet.refresh_from_db()
    assert wallet.balance == 0 == _postings_sum(wallet)
    with pytest.raises(LedgerError):
        journal_reverse(entry=entry, reason="again", actor=SYSTEM, as_of=NOW)
    with pytest.raises(LedgerError):
        wallet_adjust(
            wallet=wallet, amount=10, reason=" ", idempotency_key="a", actor=SYSTEM, as_of=NOW
        )
    wallet_adjust(
        wallet=wallet, amount=-40, reason="meter test", idempotency_key="a", actor=SYSTEM, as_of=NOW
    )
    wallet.refresh_from_db()
    assert wallet.balance == -40
    total = sum(Posting.objects.values_list("amount", flat=True))
    assert total == 0
    assert LedgerAccount.objects.filter(kind="adjustments").count() == 1


def test_the_app_role_cannot_update_or_delete_postings() -> None:
    import os
    from io import StringIO

    from django.core.management import call_command

    wallet = _wallet()
    _credit(wallet, 100, "role")
    role = f"smp_billing_{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")  # rolled back with the test
    out = StringIO()
    call_command("db_grant_app_role", role, stdout=out)
    assert "billing_journalentry" in out.getvalue() and "billing_posting" in out.getvalue()
    for statement, error in (
        ("UPDATE billing_posting SET amount = 1", "permission"),
        ("DELETE FROM billing_posting", "permission"),
        ("DELETE FROM billing_journalentry", "permission"),
        ("ALTER TABLE billing_posting DISABLE TRIGGER USER", "must be owner"),
    ):
        with (
            pytest.raises(DatabaseError, match=error),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SET LOCAL ROLE {role}; {statement}")
    # Reading and appending stay possible: a new credit posts as the app role.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        _credit(wallet, 50, "as-app-role")
    wallet.refresh_from_db()
    assert wallet.balance == 150
