"""Audit scenarios of billing.services.ledger (merged by tests/portal/test_audit_per_service)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import transaction

from billing.services import ledger
from portal.audit.events import AuditEvent
from tests.conftest import World
from tests.factories import SYSTEM

NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)


def _wallet(world: World) -> Any:
    return ledger.wallet_create(account=world.account_a, actor=SYSTEM)


def _funded(world: World) -> Any:
    wallet = _wallet(world)
    clearing = ledger.ledger_account_get(kind="clearing", currency=wallet.currency, key="t")
    with transaction.atomic():
        entry, _ = ledger.journal_post(
            kind="topup",
            currency=wallet.currency,
            memo="t",
            idempotency_key="scenario",
            postings=[(wallet.ledger_account_id, -100), (clearing.pk, 100)],
            effective_date=NOW.date(),
            created_by_label="t",
            as_of=NOW,
            account_id=wallet.account_id,
        )
    return entry


def _update(world: World) -> Callable[[], object]:
    wallet = _wallet(world)
    return lambda: ledger.wallet_update(wallet=wallet, emergency_credit=500, actor=SYSTEM)


def _reverse(world: World) -> Callable[[], object]:
    entry = _funded(world)
    return lambda: ledger.journal_reverse(entry=entry, reason="t", actor=SYSTEM, as_of=NOW)


def _adjust(world: World) -> Callable[[], object]:
    wallet = _wallet(world)
    return lambda: ledger.wallet_adjust(
        wallet=wallet, amount=5, reason="t", idempotency_key="t", actor=SYSTEM, as_of=NOW
    )


SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {
    "billing.services.ledger.wallet_create": (
        lambda w: lambda: ledger.wallet_create(account=w.account_a, actor=SYSTEM),
        AuditEvent.WALLET_CREATED,
    ),
    "billing.services.ledger.wallet_update": (_update, AuditEvent.WALLET_UPDATED),
    "billing.services.ledger.journal_reverse": (_reverse, AuditEvent.LEDGER_REVERSED),
    "billing.services.ledger.wallet_adjust": (_adjust, AuditEvent.WALLET_ADJUSTED),
}

EXEMPT: dict[str, str] = {
    "billing.services.ledger.ledger_account_get": "chart-of-accounts lookup, created on first use",
    "billing.services.ledger.journal_post": (
        "the posting primitive: every caller (top-up, charge, refund, adjustment) audits the "
        "business event it posts"
    ),
}
