"""Many threads, each with its own database connection, top up and charge the same wallets.

No update is lost: every wallet's balance equals minus its postings and exactly what the
threads did, each payment is credited once though its webhook is delivered twice (and
redelivered later, from another thread), and ledger_verify finds nothing.

The default run is 8 threads x 25 operations; LEDGER_CONCURRENCY="50x200" runs the bar of
docs/QUALITY.md (50 threads x 200 operations).
"""

from __future__ import annotations

import os
import random
import threading
from collections import defaultdict

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import JournalEntry, LedgerAccount, Posting, TopUp, Wallet
from billing.payments.providers import provider_get
from billing.payments.sandbox import SandboxProvider
from billing.services.ledger import journal_post, ledger_account_get, wallet_create
from billing.services.topups import topup_checkout_start, topup_create, webhook_receive
from billing.services.verify import ledger_verify
from tests.factories import SYSTEM, make_account

THREADS, OPERATIONS = (int(n) for n in os.environ.get("LEDGER_CONCURRENCY", "8x25").split("x"))
WALLETS = 3


def _sandbox() -> SandboxProvider:
    provider = provider_get("sandbox")
    assert isinstance(provider, SandboxProvider)
    return provider


def test_concurrent_topups_and_charges_lose_no_update(transactional_db: None) -> None:
    wallets = [wallet_create(account=make_account(), actor=SYSTEM) for _ in range(WALLETS)]
    revenue = ledger_account_get(kind=LedgerAccount.Kind.REVENUE, currency="TWD")
    ledger_account_get(kind=LedgerAccount.Kind.CLEARING, currency="TWD", key="sandbox")
    expected: dict[int, int] = defaultdict(int)
    credited: list[int] = []
    delivered: list[bytes] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        rng = random.Random(n)
        sandbox = _sandbox()
        mine: dict[int, int] = defaultdict(int)
        try:
            start.wait()
            for op in range(OPERATIONS):
                wallet = rng.choice(wallets)
                amount = rng.randrange(1, 1_000)
                now = timezone.now()
                roll = rng.random()
                if roll < 0.4:
                    topup, _new = topup_create(
                        account=wallet.account,
                        amount=amount,
                        idempotency_key=f"c{n}-{op}",
                        actor=SYSTEM,
                        as_of=now,
                    )
                    topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=now)
                    body, headers = sandbox.checkout_complete(
                        reference=topup.public_id, paid=True, as_of=now
                    )
                    for _ in range(2):
                        webhook_receive(provider=sandbox, body=body, headers=headers, as_of=now)
                    mine[wallet.pk] += amount
                    with lock:
                        credited.append(topup.pk)
                        delivered.append(body)
                elif roll < 0.85 or not delivered:
                    with transaction.atomic():
                        journal_post(
                            kind=JournalEntry.Kind.CHARGE,
                            currency="TWD",
                            memo="charge",
                            idempotency_key=f"charge:{n}:{op}",
                            postings=[(wallet.ledger_account_id, amount), (revenue.pk, -amount)],
                            effective_date=now.date(),
                            created_by_label="thread",
                            as_of=now,
                            account_id=wallet.account_id,
                        )
                    mine[wallet.pk] -= amount
                else:  # a late redelivery of someone's webhook, signed anew
                    with lock:
                        body = rng.choice(delivered)
                    outcome = webhook_receive(
                        provider=sandbox,
                        body=body,
                        headers=sandbox.signed_headers(body=body, as_of=now),
                        as_of=now,
                    )
                    assert outcome.result == "duplicate", outcome
            with lock:
                for key, value in mine.items():
                    expected[key] += value
        except Exception as error:  # noqa: BLE001 (reported by the main thread)
            with lock:
                errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    for wallet in wallets:
        balance = Wallet.objects.get(pk=wallet.pk).balance
        postings = Posting.objects.filter(ledger_account_id=wallet.ledger_account_id).aggregate(
            s=Sum("amount")
        )["s"]
        assert balance == -(postings or 0) == expected[wallet.pk]
    assert JournalEntry.objects.filter(kind="topup").count() == len(credited)
    assert TopUp.objects.filter(status="succeeded").count() == len(credited)
    assert (Posting.objects.aggregate(s=Sum("amount"))["s"] or 0) == 0
    assert ledger_verify().ok
