"""Reads of top-ups for the portal pages, the API and the reconciliation task.

Kept beside the providers (billing.selectors belongs to the ledger and charging work); every
customer-facing read starts from the account.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import Q, QuerySet, Sum

from billing.models import JournalEntry, TopUp, WebhookEvent


def topups_for_account(*, account_id: int) -> QuerySet[TopUp]:
    """The account's top-ups, newest first."""
    return TopUp.objects.for_account(account_id).order_by("-created_at", "-pk")


def topup_for_account(*, account_id: int, public_id: uuid.UUID | str) -> TopUp | None:
    """One top-up of the account, or None (also for another account's top-up)."""
    try:
        key = uuid.UUID(str(public_id))
    except ValueError:
        return None
    return (
        TopUp.objects.for_account(account_id)
        .select_related("wallet", "account")
        .filter(public_id=key)
        .first()
    )


def topup_by_reference(*, reference: str) -> TopUp | None:
    """The top-up a provider names by our reference (its public id)."""
    try:
        key = uuid.UUID(reference)
    except ValueError:
        return None
    return TopUp.objects.filter(public_id=key).first()


def topup_by_id(*, topup_id: int) -> TopUp | None:
    return TopUp.objects.filter(pk=topup_id).first()


def topups_to_reconcile(*, as_of: dt.datetime, limit: int) -> list[int]:
    """Ids of the top-ups whose outcome must be asked of the provider, oldest first.

    `unknown` ones at once; `pending` ones after ten minutes without news (the webhook may be
    lost); `created` ones after an hour (the portal died between creating and starting them).
    """
    due = (
        Q(status=TopUp.Status.UNKNOWN)
        | Q(status=TopUp.Status.PENDING, updated_at__lte=as_of - dt.timedelta(minutes=10))
        | Q(status=TopUp.Status.CREATED, updated_at__lte=as_of - dt.timedelta(hours=1))
    )
    return list(
        TopUp.objects.filter(due).order_by("updated_at", "pk").values_list("pk", flat=True)[:limit]
    )


def topup_refund_key_prefix(topup: TopUp) -> str:
    """The idempotency-key prefix of the refund entries of a top-up."""
    return f"refund:{topup.pk}:"


def topup_refunded(*, topup: TopUp) -> int:
    """Minor units refunded so far from a top-up (what its refund entries debited the wallet)."""
    total = JournalEntry.objects.filter(
        kind=JournalEntry.Kind.REFUND,
        idempotency_key__startswith=topup_refund_key_prefix(topup),
        postings__ledger_account_id=topup.wallet.ledger_account_id,
    ).aggregate(total=Sum("postings__amount"))["total"]
    return int(total or 0)


def webhook_events_unprocessed(*, provider: str) -> QuerySet[WebhookEvent]:
    """Verified webhooks whose processing failed (for staff)."""
    return WebhookEvent.objects.filter(
        provider=provider, verified=True, processed_at__isnull=True
    ).order_by("received_at")
