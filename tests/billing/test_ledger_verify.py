"""ledger_verify: a clean ledger is reported OK; each kind of corruption is reported, first one
first, and the command exits non-zero."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from billing.models import JournalEntry, Posting, TopUp, Wallet
from billing.payments.providers import provider_get
from billing.payments.sandbox import SandboxProvider
from billing.services.ledger import journal_post, ledger_account_get, wallet_create
from billing.services.topups import topup_checkout_start, topup_create, webhook_receive
from billing.services.verify import ledger_verify
from billing.tasks.payments import ledger_verify_task
from tests.factories import SYSTEM, make_account

pytestmark = pytest.mark.django_db


def _paid_topup(amount: int = 10_000) -> TopUp:
    wallet = wallet_create(account=make_account(), actor=SYSTEM)
    now = timezone.now()
    topup, _new = topup_create(
        account=wallet.account, amount=amount, idempotency_key="k", actor=SYSTEM, as_of=now
    )
    topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=now)
    sandbox = provider_get("sandbox")
    assert isinstance(sandbox, SandboxProvider)
    body, headers = sandbox.checkout_complete(reference=topup.public_id, paid=True, as_of=now)
    webhook_receive(provider=sandbox, body=body, headers=headers, as_of=now)
    topup.refresh_from_db()
    return topup


@contextlib.contextmanager
def triggers_off() -> Iterator[None]:
    """Switch the ledger's own triggers off inside the test's transaction (as the owner), to
    corrupt rows as only someone bypassing the application could."""
    tables = ("billing_posting", "billing_journalentry", "billing_wallet", "billing_topup")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    yield
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def _command() -> str:
    out = io.StringIO()
    call_command("ledger_verify", stdout=out)
    return out.getvalue()


def test_a_clean_ledger_is_reported_ok() -> None:
    _paid_topup()
    _paid_topup(2_500)
    report = ledger_verify()
    assert report.ok and report.violation is None
    assert (report.entries, report.wallets, report.topups) == (2, 2, 2)
    assert _command().startswith("ledger OK: 2 entries, 4 postings, 2 wallets, 2 top-ups")
    assert ledger_verify_task.run()["ok"] is True


def test_an_empty_ledger_is_ok() -> None:
    assert ledger_verify().ok


def test_a_changed_posting_is_the_first_violation_and_the_command_fails() -> None:
    first = _paid_topup()
    _paid_topup()
    posting = Posting.objects.filter(entry=first.entry).order_by("id").first()
    assert posting is not None
    with triggers_off():
        Posting.objects.filter(pk=posting.pk).update(amount=posting.amount + 5)
    report = ledger_verify()
    assert report.violation is not None
    assert report.violation.check == "entry_balances"
    assert report.violation.message == (
        f"journal entry {first.entry_id} does not balance: its 2 postings sum to 5"
    )
    with pytest.raises(CommandError, match="entry_balances") as failed:
        _command()
    assert failed.value.returncode == 1
    assert ledger_verify_task.run()["ok"] is False


def test_a_posting_moved_to_another_currency_is_reported() -> None:
    topup = _paid_topup()
    hkd = ledger_account_get(kind="clearing", currency="HKD", key="sandbox")
    moved = Posting.objects.get(entry=topup.entry, ledger_account__code="clearing:sandbox:TWD")
    with triggers_off():
        Posting.objects.filter(pk=moved.pk).update(ledger_account=hkd)
    report = ledger_verify()
    assert report.violation is not None and report.violation.check == "entry_currency"
    assert report.violation.message == (
        f"journal entry {topup.entry_id} in TWD has posting {moved.pk} on "
        "clearing:sandbox:HKD, of another currency"
    )


def test_a_wallet_balance_changed_behind_the_ledger_is_reported() -> None:
    topup = _paid_topup()
    with triggers_off():
        Wallet.objects.filter(pk=topup.wallet_id).update(balance=1)
    report = ledger_verify()
    assert report.violation is not None and report.violation.check == "wallet_balance"
    assert report.violation.message == (
        f"wallet {topup.wallet_id} (account {topup.account_id}) has balance 1 but its "
        "postings make 10000"
    )


def test_a_payment_credited_twice_is_reported_even_when_every_entry_balances() -> None:
    topup = _paid_topup()
    wallet = Wallet.objects.get(pk=topup.wallet_id)
    clearing = ledger_account_get(kind="clearing", currency="TWD", key="sandbox")
    with transaction.atomic():
        journal_post(
            kind=JournalEntry.Kind.TOPUP,
            currency="TWD",
            memo="the same payment again",
            idempotency_key=f"topup:{topup.pk}:again",
            postings=[(wallet.ledger_account_id, -topup.amount), (clearing.pk, topup.amount)],
            effective_date=timezone.now().date(),
            created_by_label="bug",
            as_of=timezone.now(),
            account_id=topup.account_id,
        )
    report = ledger_verify()
    assert report.violation is not None
    assert report.violation.check == "topup_credited_once"
    assert report.violation.message == f"top-up {topup.pk} is credited by 2 entries"


def test_a_paid_topup_without_its_credit_is_reported() -> None:
    topup = _paid_topup()
    with triggers_off():
        TopUp.objects.filter(pk=topup.pk).update(entry=None)
    report = ledger_verify()
    assert report.violation is not None and report.violation.check == "topup_entry_matches"


def test_a_global_imbalance_across_entries_is_reported() -> None:
    topup = _paid_topup()
    wallet = Wallet.objects.get(pk=topup.wallet_id)
    # Two entries that each balance on their own cannot unbalance the whole; an extra
    # posting in the database (triggers off) on a balanced entry does both: the entry check
    # comes first.
    with triggers_off():
        Posting.objects.bulk_create(
            [Posting(entry=topup.entry, ledger_account_id=wallet.ledger_account_id, amount=-1)]
        )
    report = ledger_verify()
    assert report.violation is not None and report.violation.check == "entry_balances"
