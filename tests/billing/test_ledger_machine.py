"""A hypothesis state machine against a model ledger: top-ups with duplicated and shuffled
webhooks, daily charges, refunds, adjustments and replays, on the real services and database.

After every step: each wallet's balance equals minus the sum of its postings and the model's
balance, the postings of the whole ledger sum to zero, and every payment is credited at most
once (exactly once when it was paid). LEDGER_MACHINE_EXAMPLES scales the search (default 25).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from billing.models import JournalEntry, LedgerAccount, Posting, TopUp, Wallet
from billing.payments.providers import provider_get
from billing.payments.sandbox import SandboxProvider
from billing.services.ledger import journal_post, ledger_account_get, wallet_adjust, wallet_create
from billing.services.topups import (
    TopUpError,
    topup_checkout_start,
    topup_create,
    topup_refund,
    webhook_receive,
)
from tests.factories import SYSTEM, make_account

EXAMPLES = int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "25"))
_keys = itertools.count(1)


@dataclass
class ModelTopUp:
    pk: int
    wallet: int
    amount: int
    paid: bool = False
    refunded: int = 0
    deliveries: list[bytes] = field(default_factory=list)


def _sandbox() -> SandboxProvider:
    provider = provider_get("sandbox")
    assert isinstance(provider, SandboxProvider)
    return provider


def _event(event_id: str, event_type: str, topup: TopUp) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "data": {
                "payment": topup.provider_ref,
                "reference": str(topup.public_id),
                "amount": topup.amount,
                "currency": topup.currency,
            },
        }
    ).encode()


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.wallets = [wallet_create(account=make_account(), actor=SYSTEM) for _ in range(2)]
        self.balance = {w.pk: 0 for w in self.wallets}
        self.topups: list[ModelTopUp] = []
        self.revenue = ledger_account_get(kind=LedgerAccount.Kind.REVENUE, currency="TWD")
        self.sandbox = _sandbox()

    def _deliver(self, body: bytes) -> None:
        now = timezone.now()
        outcome = webhook_receive(
            provider=self.sandbox,
            body=body,
            headers=self.sandbox.signed_headers(body=body, as_of=now),
            as_of=now,
        )
        assert outcome.status == 200, outcome

    @rule(wallet=st.integers(0, 1), amount=st.integers(1, 50_000))
    def start_topup(self, wallet: int, amount: int) -> None:
        w = self.wallets[wallet]
        now = timezone.now()
        topup, new = topup_create(
            account=w.account,
            amount=amount,
            idempotency_key=f"m{next(_keys)}",
            actor=SYSTEM,
            as_of=now,
        )
        assert new
        topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=now)
        self.topups.append(ModelTopUp(pk=topup.pk, wallet=w.pk, amount=amount))

    @precondition(lambda self: any(not t.deliveries for t in self.topups))
    @rule(data=st.data(), paid=st.booleans())
    def settle_with_webhooks(self, data: st.DataObject, paid: bool) -> None:
        """The provider decides, then sends its events: duplicated, shuffled, with a second
        success event for the same payment and a stale decline mixed in."""
        model = data.draw(st.sampled_from([t for t in self.topups if not t.deliveries]))
        topup = TopUp.objects.get(pk=model.pk)
        body, _headers = self.sandbox.checkout_complete(
            reference=topup.public_id, paid=paid, as_of=timezone.now()
        )
        events = [body]
        if paid:
            events.append(_event(f"evt_alt_{topup.pk}", "payment.succeeded", topup))
            if data.draw(st.booleans()):
                events.append(_event(f"evt_stale_{topup.pk}", "payment.failed", topup))
        copies = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=8))
        deliveries = data.draw(st.permutations([*events, *copies]))
        for delivery in deliveries:
            self._deliver(delivery)
        model.deliveries = list(deliveries)
        if paid:
            model.paid = True
            self.balance[model.wallet] += model.amount

    @precondition(lambda self: any(t.deliveries for t in self.topups))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A provider redelivers an old event (signed anew); nothing changes."""
        model = data.draw(st.sampled_from([t for t in self.topups if t.deliveries]))
        self._deliver(data.draw(st.sampled_from(model.deliveries)))

    @precondition(lambda self: bool(self.topups))
    @rule(data=st.data())
    def replay_topup_create(self, data: st.DataObject) -> None:
        model = data.draw(st.sampled_from(self.topups))
        topup = TopUp.objects.get(pk=model.pk)
        again, new = topup_create(
            account=topup.account,
            amount=topup.amount,
            idempotency_key=topup.idempotency_key,
            actor=SYSTEM,
            as_of=timezone.now(),
        )
        assert again.pk == topup.pk and not new

    @rule(wallet=st.integers(0, 1), amount=st.integers(1, 30_000), day=st.integers(0, 10_000))
    def daily_charge(self, wallet: int, amount: int, day: int) -> None:
        w = self.wallets[wallet]
        key = f"machine-charge:{w.pk}:{day}"
        with transaction.atomic():
            _entry, new = journal_post(
                kind=JournalEntry.Kind.CHARGE,
                currency="TWD",
                memo="daily charge",
                idempotency_key=key,
                postings=[(w.ledger_account_id, amount), (self.revenue.pk, -amount)],
                effective_date=timezone.now().date(),
                created_by_label="machine",
                as_of=timezone.now(),
                account_id=w.account_id,
            )
        if new:  # the same day again is a replay: charged once
            self.balance[w.pk] -= amount

    @precondition(lambda self: any(t.paid for t in self.topups))
    @rule(data=st.data(), amount=st.integers(1, 60_000))
    def refund(self, data: st.DataObject, amount: int) -> None:
        model = data.draw(st.sampled_from([t for t in self.topups if t.paid]))
        key = f"r{next(_keys)}"
        allowed = amount <= model.amount - model.refunded and amount <= self.balance[model.wallet]
        try:
            topup_refund(
                topup=TopUp.objects.get(pk=model.pk),
                amount=amount,
                reason="machine",
                idempotency_key=key,
                actor=SYSTEM,
                as_of=timezone.now(),
            )
        except TopUpError:
            assert not allowed
            return
        assert allowed
        model.refunded += amount
        self.balance[model.wallet] -= amount
        # The same refund again (a double click in the admin) refunds nothing more.
        topup_refund(
            topup=TopUp.objects.get(pk=model.pk),
            amount=amount,
            reason="machine",
            idempotency_key=key,
            actor=SYSTEM,
            as_of=timezone.now(),
        )

    @rule(wallet=st.integers(0, 1), amount=st.integers(-20_000, 20_000).filter(bool))
    def adjust(self, wallet: int, amount: int) -> None:
        w = self.wallets[wallet]
        key = f"a{next(_keys)}"
        wallet_adjust(
            wallet=w,
            amount=amount,
            reason="machine",
            idempotency_key=key,
            actor=SYSTEM,
            as_of=timezone.now(),
        )
        wallet_adjust(
            wallet=w,
            amount=amount,
            reason="machine",
            idempotency_key=key,
            actor=SYSTEM,
            as_of=timezone.now(),
        )
        self.balance[w.pk] += amount

    @invariant()
    def wallets_equal_their_postings_and_the_model(self) -> None:
        for w in self.wallets:
            real = Wallet.objects.get(pk=w.pk).balance
            postings = (
                Posting.objects.filter(ledger_account_id=w.ledger_account_id).aggregate(
                    s=Sum("amount")
                )["s"]
                or 0
            )
            assert real == -postings == self.balance[w.pk]

    @invariant()
    def the_ledger_sums_to_zero(self) -> None:
        assert (Posting.objects.aggregate(s=Sum("amount"))["s"] or 0) == 0

    @invariant()
    def each_payment_is_credited_at_most_once(self) -> None:
        for model in self.topups:
            credits = JournalEntry.objects.filter(
                kind=JournalEntry.Kind.TOPUP, idempotency_key__startswith=f"topup:{model.pk}"
            ).count()
            assert credits == (1 if model.paid else 0)


@pytest.mark.django_db
def test_the_ledger_matches_its_model_after_every_step() -> None:
    LedgerMachine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    LedgerMachine.TestCase().runTest()
