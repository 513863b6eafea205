"""10^4 duplicated and shuffled payment webhooks: every payment credits exactly once.

PAYMENT_BULK_WEBHOOKS scales the number of deliveries (default 10,000, the bar of docs/QUALITY.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import JournalEntry, TopUp, Wallet, WebhookEvent
from billing.payments.providers import provider_get
from billing.payments.sandbox import SIGNATURE_HEADER, SandboxProvider
from billing.services.ledger import wallet_create
from billing.services.topups import topup_checkout_start, topup_create, webhook_receive
from billing.services.verify import ledger_verify
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_account

DELIVERIES = int(os.environ.get("PAYMENT_BULK_WEBHOOKS", "10000"))
TOPUPS = max(10, DELIVERIES // 50)
WALLETS = 20


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


@pytest.mark.django_db
def test_duplicated_and_shuffled_webhooks_credit_each_payment_once() -> None:
    rng = random.Random(20260504)
    now = timezone.now()
    wallets = [wallet_create(account=make_account(), actor=SYSTEM) for _ in range(WALLETS)]
    topups: list[TopUp] = []
    for i in range(TOPUPS):
        wallet = wallets[i % WALLETS]
        topup, _new = topup_create(
            account=wallet.account,
            amount=rng.randrange(1, 500) * 100,
            idempotency_key=f"bulk-{i}",
            actor=SYSTEM,
            as_of=now,
        )
        topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=now)
        topups.append(topup)
    # Per top-up: the success event, often a second success event with another id for the same
    # payment (providers send several event types for one payment), sometimes a decline that
    # came first; one top-up in ten is never paid (declined only).
    events: list[bytes] = []
    paid: set[int] = set()
    for i, topup in enumerate(topups):
        if i % 10 == 9:
            events.append(_event(f"evt_{i}_declined", "payment.failed", topup))
            continue
        paid.add(topup.pk)
        events.append(_event(f"evt_{i}_succeeded", "payment.succeeded", topup))
        if rng.random() < 0.5:
            events.append(_event(f"evt_{i}_captured", "payment.succeeded", topup))
        if rng.random() < 0.2:
            events.append(_event(f"evt_{i}_declined", "payment.failed", topup))
    deliveries = list(events)
    while len(deliveries) < DELIVERIES:
        deliveries.append(rng.choice(events))
    rng.shuffle(deliveries)

    sandbox = _sandbox()
    results: Counter[str] = Counter()
    for n, body in enumerate(deliveries):
        at = now + dt.timedelta(milliseconds=n)
        outcome = webhook_receive(
            provider=sandbox,
            body=body,
            headers=sandbox.signed_headers(body=body, as_of=at),
            as_of=at,
        )
        assert outcome.status == 200, outcome
        results[outcome.result.split(":")[0]] += 1

    credits = JournalEntry.objects.filter(kind="topup")
    assert credits.count() == len(paid) == results["credited"]
    assert set(TopUp.objects.filter(status="succeeded").values_list("pk", flat=True)) == paid
    assert TopUp.objects.filter(status="failed").count() == len(topups) - len(paid)
    for wallet in wallets:
        expected = (
            TopUp.objects.filter(wallet=wallet, pk__in=paid).aggregate(s=Sum("amount"))["s"] or 0
        )
        assert Wallet.objects.get(pk=wallet.pk).balance == expected
    assert WebhookEvent.objects.aggregate(n=Sum("deliveries"))["n"] == DELIVERIES
    assert WebhookEvent.objects.filter(processed_at__isnull=True).count() == 0
    assert ledger_verify().ok


@pytest.mark.django_db
def test_duplicated_webhooks_through_the_http_endpoint_credit_once(
    world: World, client_for: Callable[[User], Client]
) -> None:
    wallet = wallet_create(account=world.account_a, actor=SYSTEM)
    now = timezone.now()
    topups = []
    for i in range(5):
        topup, _new = topup_create(
            account=wallet.account, amount=1_000, idempotency_key=f"h{i}", actor=SYSTEM, as_of=now
        )
        topups.append(topup_checkout_start(topup=topup, actor=SYSTEM, as_of=now)[0])
    sandbox = _sandbox()
    bodies = [
        sandbox.checkout_complete(reference=t.public_id, paid=True, as_of=now)[0] for t in topups
    ]
    deliveries = bodies * 4
    random.Random(7).shuffle(deliveries)
    client = Client(enforce_csrf_checks=True)
    url = reverse("billing:payment_webhook", kwargs={"provider": "sandbox"})
    answers: Counter[Any] = Counter()
    for body in deliveries:
        header = sandbox.signed_headers(body=body, as_of=timezone.now())[SIGNATURE_HEADER]
        response = client.post(
            url, body, content_type="application/json", HTTP_SANDBOX_SIGNATURE=header
        )
        answers[(response.status_code, response.json()["result"])] += 1
    assert answers == {(200, "credited"): 5, (200, "duplicate"): 15}
    assert Wallet.objects.get(pk=wallet.pk).balance == 5_000
