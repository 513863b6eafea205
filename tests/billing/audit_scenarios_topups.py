"""Audit scenarios of billing.services.topups (merged by tests/portal/test_audit_per_service)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from billing.models import TopUp
from billing.payments.providers import provider_get
from billing.payments.sandbox import SandboxProvider
from billing.services import topups
from billing.services.ledger import wallet_create
from portal.audit.events import AuditEvent
from tests.conftest import World
from tests.factories import SYSTEM


def _created(world: World, amount: int = 500) -> TopUp:
    wallet_create(account=world.account_a, actor=SYSTEM)
    topup, _new = topups.topup_create(
        account=world.account_a,
        amount=amount,
        idempotency_key="scenario",
        actor=SYSTEM,
        as_of=timezone.now(),
    )
    return topup


def _pending(world: World) -> TopUp:
    topup, _url = topups.topup_checkout_start(
        topup=_created(world), actor=SYSTEM, as_of=timezone.now()
    )
    return topup


def _sandbox() -> SandboxProvider:
    provider = provider_get("sandbox")
    assert isinstance(provider, SandboxProvider)
    return provider


def _create(world: World) -> Callable[[], object]:
    wallet_create(account=world.account_a, actor=SYSTEM)
    return lambda: topups.topup_create(
        account=world.account_a, amount=5, idempotency_key="k", actor=SYSTEM, as_of=timezone.now()
    )


def _checkout(world: World) -> Callable[[], object]:
    topup = _created(world)
    return lambda: topups.topup_checkout_start(topup=topup, actor=SYSTEM, as_of=timezone.now())


def _paid(world: World) -> Callable[[], object]:
    topup = _pending(world)
    return lambda: topups.topup_settle_paid(
        topup_id=topup.pk,
        provider_ref=topup.provider_ref,
        amount=topup.amount,
        currency=topup.currency,
        actor=SYSTEM,
        as_of=timezone.now(),
    )


def _failed(world: World) -> Callable[[], object]:
    topup = _pending(world)
    return lambda: topups.topup_settle_failed(
        topup_id=topup.pk, reason="declined", actor=SYSTEM, as_of=timezone.now()
    )


def _webhook(world: World) -> Callable[[], object]:
    topup = _pending(world)
    body, headers = _sandbox().checkout_complete(
        reference=topup.public_id, paid=True, as_of=timezone.now()
    )
    return lambda: topups.webhook_receive(
        provider=_sandbox(), body=body, headers=headers, as_of=timezone.now()
    )


def _reconcile(world: World) -> Callable[[], object]:
    topup = _pending(world)
    _sandbox().checkout_complete(reference=topup.public_id, paid=True, as_of=timezone.now())
    later = timezone.now() + dt.timedelta(minutes=30)
    return lambda: topups.topups_reconcile(actor=SYSTEM, as_of=later)


def _check(world: World) -> Callable[[], object]:
    topup = _pending(world)
    _sandbox().checkout_complete(reference=topup.public_id, paid=True, as_of=timezone.now())
    return lambda: topups.topup_check(topup=topup, actor=SYSTEM, as_of=timezone.now())


def _refund(world: World) -> Callable[[], object]:
    topup = _pending(world)
    body, headers = _sandbox().checkout_complete(
        reference=topup.public_id, paid=True, as_of=timezone.now()
    )
    topups.webhook_receive(provider=_sandbox(), body=body, headers=headers, as_of=timezone.now())
    return lambda: topups.topup_refund(
        topup=topup, amount=100, reason="t", idempotency_key="t", actor=SYSTEM, as_of=timezone.now()
    )


SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], Any]], AuditEvent]] = {
    "billing.services.topups.topup_create": (_create, AuditEvent.TOPUP_CREATED),
    "billing.services.topups.topup_checkout_start": (_checkout, AuditEvent.TOPUP_PENDING),
    "billing.services.topups.topup_settle_paid": (_paid, AuditEvent.TOPUP_SUCCEEDED),
    "billing.services.topups.topup_settle_failed": (_failed, AuditEvent.TOPUP_FAILED),
    "billing.services.topups.webhook_receive": (_webhook, AuditEvent.TOPUP_SUCCEEDED),
    "billing.services.topups.topups_reconcile": (_reconcile, AuditEvent.TOPUP_SUCCEEDED),
    "billing.services.topups.topup_refund": (_refund, AuditEvent.TOPUP_REFUNDED),
    "billing.services.topups.topup_check": (_check, AuditEvent.TOPUP_SUCCEEDED),
}

EXEMPT: dict[str, str] = {}
