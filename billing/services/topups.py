"""Top-ups: a resident's payment into a prepaid wallet, from checkout to credit and refund.

Lifecycle of a `TopUp`:

    created ──checkout started──▶ pending ──paid──▶ succeeded ──refund(s)──▶ refunded
       │                            │  └──declined/expired──▶ failed
       └──provider timed out──▶ unknown ──reconciliation asks the provider──▶ any of the above

Decisions, as a utility's payments desk would take them:

- **One credit per top-up, whatever arrives.** Crediting happens in `topup_settle_paid`, in
  one transaction under the top-up's row lock: the journal entry (kind `topup`, idempotency
  key `topup:<id>`, wallet credited, `clearing:<provider>:<currency>` debited), the link
  `TopUp.entry`, the status, the audit entry and the reconnection check. Concurrent or
  repeated deliveries of the same news serialise on the lock and find the top-up already
  succeeded; the entry's unique key would refuse a second credit even without the lock.
- **The provider's word that money was taken wins.** A payment reported paid after the
  top-up was marked failed (declined first, paid on a retry; or expired by reconciliation
  and paid late) is credited: the resident's money is there. A "failed" arriving after
  "paid" changes nothing.
- **Never guess on a timeout.** When the provider does not answer `checkout_start`, the
  top-up is `unknown` (it may or may not have started a payment); `topups_reconcile` asks
  the provider by our reference and settles it. Top-ups the provider never heard of fail
  after `TOPUP_EXPIRY`.
- **Amount or payment mismatches are not credited** (`PaymentMismatch`): a webhook whose
  amount or currency differs from the top-up, or a second payment for a top-up already paid
  through another payment id, is left on the webhook row for staff.
- **Webhooks are stored before anything else** (`webhook_receive`): every delivery, forged
  or not, is kept by (provider, event id) with its delivery count, so staff can see what was
  sent. Only a verified delivery is processed; a forged copy arriving first does not block
  the genuine event (its row is overwritten by the verified body). Bad or stale signatures
  answer 400 (the provider retries with a fresh signature); processing problems that a retry
  cannot fix answer 200 with the error kept on the row.
- **Refunds** (staff, with a reason) are partial or whole, up to what is left of the payment
  and never more than the wallet holds now: credit already spent on supply is not paid back
  (that would put the customer in debt); staff adjust the balance first if they mean to.
  The provider is asked to refund inside the ledger transaction, so a refused refund posts
  nothing. With a remote provider this should become two steps (refund requested, then
  confirmed by its webhook); the sandbox answers at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext_lazy as _

from billing.models import JournalEntry, LedgerAccount, TopUp, Wallet, WebhookEvent
from billing.payments.base import (
    PaymentProvider,
    PaymentState,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    SignatureInvalid,
    WebhookPayload,
)
from billing.payments.providers import provider_get
from billing.payments.selectors import (
    topup_by_reference,
    topup_refund_key_prefix,
    topup_refunded,
    topups_to_reconcile,
)
from billing.services.ledger import journal_post, ledger_account_get
from billing.services.supply import supply_reconnect_if_restored
from portal.audit.actors import Actor, SystemActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.errors import DomainError
from portal.lib.money import format_minor, minor_exponent
from portal.tenancy.models import Account

# A top-up the provider has never heard of is given up after this long.
TOPUP_EXPIRY = dt.timedelta(hours=24)
_OPEN = (TopUp.Status.CREATED, TopUp.Status.PENDING, TopUp.Status.UNKNOWN)

logger = logging.getLogger(__name__)


class TopUpError(DomainError):
    """A top-up change that cannot be made; `message` says why."""


class IdempotencyKeyReused(TopUpError):
    """The idempotency key was used before for a different top-up."""


class PaymentMismatch(TopUpError):
    """A provider reports a payment that does not match the top-up (amount, currency, id)."""


def _local_day(account: Account, as_of: dt.datetime) -> dt.date:
    return as_of.astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()


def _clearing(provider: str, currency: str) -> LedgerAccount:
    return ledger_account_get(kind=LedgerAccount.Kind.CLEARING, currency=currency, key=provider)


@transaction.atomic
def topup_create(
    *,
    account: Account,
    amount: int,
    idempotency_key: str,
    actor: Actor,
    as_of: dt.datetime,
    provider: str | None = None,
) -> tuple[TopUp, bool]:
    """Create a top-up of `amount` minor units; return it and whether it is new.

    The same idempotency key again (a double submit, a retried API call) returns the first
    top-up instead of making another.

    :raises TopUpError: for an account without a wallet, an amount out of range, an empty or
        too long key, or a key used before for another amount.
    """
    key = idempotency_key.strip()
    if not key or len(key) > 120:
        raise TopUpError(_("An idempotency key of 1 to 120 characters is required."))
    wallet = Wallet.objects.filter(account=account).first()
    if wallet is None:
        raise TopUpError(_("This account has no prepaid wallet to top up."))
    if amount <= 0:
        raise TopUpError(_("The amount must be more than zero."))
    if amount > settings.PAYMENT_TOPUP_MAX * 10 ** minor_exponent(wallet.currency):
        raise TopUpError(
            _("A single top-up is at most %(max)s %(currency)s.")
            % {"max": settings.PAYMENT_TOPUP_MAX, "currency": wallet.currency}
        )
    existing = TopUp.objects.filter(account=account, idempotency_key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                topup = TopUp.objects.create(
                    account=account,
                    wallet=wallet,
                    amount=amount,
                    currency=wallet.currency,
                    provider=provider or settings.PAYMENT_PROVIDER,
                    idempotency_key=key,
                    created_by_id=actor.user_id,
                    created_at=as_of,
                    updated_at=as_of,
                )
        except IntegrityError:  # the same key, committed meanwhile by a concurrent request
            existing = TopUp.objects.get(account=account, idempotency_key=key)
        else:
            audit_record(
                actor=actor,
                event=AuditEvent.TOPUP_CREATED,
                account=account,
                target=topup,
                data={
                    "number": account.number,
                    "amount": format_minor(amount, wallet.currency),
                    "provider": topup.provider,
                },
            )
            return topup, True
    if existing.amount != amount:
        raise IdempotencyKeyReused(_("This idempotency key was already used for another amount."))
    return existing, False


def _transition(
    *,
    topup_id: int,
    allowed_from: tuple[str, ...],
    to: str,
    event: AuditEvent,
    actor: Actor,
    as_of: dt.datetime,
    reason: str = "",
    provider_ref: str = "",
) -> TopUp | None:
    """Move an open top-up to `to` under its row lock; None when it was no longer allowed."""
    with transaction.atomic():
        # of=self: locking the joined account row too would conflict with every insert that
        # references the account (a key-share lock) and could deadlock with the audit lock.
        topup = (
            TopUp.objects.select_for_update(of=("self",)).select_related("account").get(pk=topup_id)
        )
        if topup.status not in allowed_from:
            return None
        before = topup.status
        topup.status = to
        topup.error = reason[:300]
        if provider_ref:
            topup.provider_ref = provider_ref
        topup.updated_at = as_of
        topup.save(update_fields=["status", "error", "provider_ref", "updated_at"])
        audit_record(
            actor=actor,
            event=event,
            account=topup.account,
            target=topup,
            data={
                "number": topup.account.number,
                "amount": format_minor(topup.amount, topup.currency),
                "provider": topup.provider,
                "status": {"before": before, "after": to},
                "reason": reason[:300],
            },
        )
        return topup


def topup_checkout_start(
    *, topup: TopUp, actor: Actor, as_of: dt.datetime, provider: PaymentProvider | None = None
) -> tuple[TopUp, str | None]:
    """Ask the provider to start the payment of a created top-up; return the top-up and the
    page where the resident pays (None when there is nothing to pay now).

    The provider is called outside any transaction (a slow provider holds no lock). A top-up
    already pending returns its checkout page again; one already settled returns None. A
    timeout leaves the top-up `unknown` for reconciliation; a refusal fails it.

    :raises TopUpError: when the top-up's provider is not configured here.
    """
    try:
        provider = provider or provider_get(topup.provider)
    except ProviderUnavailable:
        raise TopUpError(_("Payments are not available at the moment.")) from None
    if topup.status == TopUp.Status.PENDING:
        url = provider.checkout_url(
            reference=topup.public_id, account_reference=_account_ref(topup)
        )
        return topup, url
    if topup.status != TopUp.Status.CREATED:
        return topup, None
    try:
        checkout = provider.checkout_start(
            reference=topup.public_id,
            account_reference=_account_ref(topup),
            amount=topup.amount,
            currency=topup.currency,
            as_of=as_of,
        )
    except ProviderError as error:
        # A timeout may have reached the provider: unknown until reconciled, never failed.
        timed_out = isinstance(error, ProviderTimeout)
        moved = _transition(
            topup_id=topup.pk,
            allowed_from=(TopUp.Status.CREATED,),
            to=TopUp.Status.UNKNOWN if timed_out else TopUp.Status.FAILED,
            event=AuditEvent.TOPUP_UNKNOWN if timed_out else AuditEvent.TOPUP_FAILED,
            actor=actor,
            as_of=as_of,
            reason=str(error),
        )
        return moved or TopUp.objects.get(pk=topup.pk), None
    moved = _transition(
        topup_id=topup.pk,
        allowed_from=(TopUp.Status.CREATED,),
        to=TopUp.Status.PENDING,
        event=AuditEvent.TOPUP_PENDING,
        actor=actor,
        as_of=as_of,
        provider_ref=checkout.provider_ref,
    )
    # A very fast provider may have settled it already; the page then shows the outcome.
    return moved or TopUp.objects.get(pk=topup.pk), checkout.redirect_url


def _account_ref(topup: TopUp) -> uuid.UUID:
    return topup.account.public_id


@transaction.atomic
def topup_settle_paid(
    *,
    topup_id: int,
    provider_ref: str,
    amount: int,
    currency: str,
    actor: Actor,
    as_of: dt.datetime,
) -> bool:
    """Credit the wallet with a paid top-up, exactly once; return whether it credited now.

    Then queue reconnection if the credit restored a disconnected supply (same transaction).

    :raises PaymentMismatch: when the amount, currency or payment id is not the top-up's.
    """
    topup = (
        TopUp.objects.select_for_update(of=("self",))
        .select_related("account", "wallet")
        .get(pk=topup_id)
    )
    if topup.status in (TopUp.Status.SUCCEEDED, TopUp.Status.REFUNDED):
        if provider_ref and topup.provider_ref and provider_ref != topup.provider_ref:
            raise PaymentMismatch(_("A second payment was reported for a paid top-up."))
        return False
    if amount != topup.amount or currency != topup.currency:
        raise PaymentMismatch(
            _("The provider reports %(paid)s, the top-up is for %(asked)s.")
            % {
                "paid": format_minor(amount, currency) if currency else amount,
                "asked": format_minor(topup.amount, topup.currency),
            }
        )
    if provider_ref and topup.provider_ref and provider_ref != topup.provider_ref:
        raise PaymentMismatch(_("The payment id is not the one of this top-up's checkout."))
    wallet = topup.wallet
    clearing = _clearing(topup.provider, topup.currency)
    entry, _new = journal_post(
        kind=JournalEntry.Kind.TOPUP,
        currency=topup.currency,
        memo=f"top-up {topup.public_id} via {topup.provider} {provider_ref}".strip(),
        idempotency_key=f"topup:{topup.pk}",
        postings=[(wallet.ledger_account_id, -amount), (clearing.pk, amount)],
        effective_date=_local_day(topup.account, as_of),
        created_by_label=actor.label,
        as_of=as_of,
        account_id=topup.account_id,
    )
    before = topup.status
    topup.entry = entry
    topup.status = TopUp.Status.SUCCEEDED
    topup.provider_ref = provider_ref or topup.provider_ref
    topup.error = ""
    topup.updated_at = as_of
    topup.save(update_fields=["entry", "status", "provider_ref", "error", "updated_at"])
    # The posting locked the wallet row, so whether it is disconnected cannot change now.
    # Only a disconnected wallet goes through the reconnection check, which locks the wallet
    # together with its account row (FOR UPDATE): that lock conflicts with the deferred
    # foreign-key checks of any concurrent insert referencing the account, which run at
    # COMMIT after the audit chain's lock is held, and so can deadlock; it is taken before
    # our audit entry, and only when there is something to reconnect.
    if Wallet.objects.filter(pk=wallet.pk, disconnected_at__isnull=False).exists():
        supply_reconnect_if_restored(wallet_id=wallet.pk, actor=actor, as_of=as_of)
    audit_record(
        actor=actor,
        event=AuditEvent.TOPUP_SUCCEEDED,
        account=topup.account,
        target=topup,
        data={
            "number": topup.account.number,
            "amount": format_minor(amount, currency),
            "provider": topup.provider,
            "payment": topup.provider_ref,
            "entry": entry.pk,
            "status": {"before": before, "after": TopUp.Status.SUCCEEDED},
        },
    )
    return True


def topup_settle_failed(*, topup_id: int, reason: str, actor: Actor, as_of: dt.datetime) -> bool:
    """Mark an open top-up failed; return whether it changed (a paid one never does)."""
    moved = _transition(
        topup_id=topup_id,
        allowed_from=_OPEN,
        to=TopUp.Status.FAILED,
        event=AuditEvent.TOPUP_FAILED,
        actor=actor,
        as_of=as_of,
        reason=reason,
    )
    return moved is not None


# --- Webhooks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookOutcome:
    """How a delivery was handled: the HTTP status to answer and a short result."""

    status: int
    result: str


def _webhook_store(
    *,
    provider: str,
    event_id: str,
    body: bytes,
    signature: str,
    verified: bool,
    error: str,
    as_of: dt.datetime,
) -> int:
    """Keep the delivery (the first body, or a count of one more delivery); return the row id.

    Committed on its own when called outside a transaction, so the raw body survives any
    failure of the processing that follows.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_webhookevent (provider, event_id, event_type, body, signature,
                verified, received_at, deliveries, error)
            VALUES (%s, %s, '', %s, %s, %s, %s, 1, %s)
            ON CONFLICT (provider, event_id)
            DO UPDATE SET deliveries = billing_webhookevent.deliveries + 1
            RETURNING id
            """,
            [
                provider,
                event_id[:120],
                body.decode("utf-8", errors="replace"),
                signature[:300],
                verified,
                as_of,
                error[:300],
            ],
        )
        (row_id,) = cursor.fetchone() or (0,)
    return int(row_id)


def _webhook_reject(
    *, provider: str, reason: str, body: bytes, address: str | None, as_of: dt.datetime
) -> None:
    """Count a refused delivery in its hour's row: bounded by providers x reasons x hours."""
    hour = as_of.replace(minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_webhookrejection (provider, reason, hour, count, last_digest,
                                                  last_size, last_address, last_at)
            VALUES (%s, %s, %s, 1, %s, %s, %s, %s)
            ON CONFLICT (provider, reason, hour) DO UPDATE SET
                count = billing_webhookrejection.count + 1,
                last_digest = EXCLUDED.last_digest, last_size = EXCLUDED.last_size,
                last_address = EXCLUDED.last_address, last_at = EXCLUDED.last_at
            """,
            [
                provider,
                reason[:100],
                hour,
                hashlib.sha256(body).hexdigest(),
                len(body),
                address,
                as_of,
            ],
        )
    logger.warning(
        "refused %s webhook (%s, %d bytes) from %s", provider, reason, len(body), address
    )


def webhook_receive(
    *,
    provider: PaymentProvider,
    body: bytes,
    headers: Mapping[str, str],
    as_of: dt.datetime,
    address: str | None = None,
) -> WebhookOutcome:
    """Verify, store, deduplicate and process one webhook delivery of `provider`.

    Returns 400 for a delivery that is not verified (bad, missing or stale signature) or not
    an event at all: it is only counted (`WebhookRejection`), never stored, so the public
    endpoint cannot be used to fill the database. 200 otherwise (also for duplicates and for
    events that cannot be applied, whose error is kept on the row: a retry would not help).
    """
    actor = SystemActor(f"webhook:{provider.name}")
    error = ""
    signature = ""
    try:
        signature = provider.webhook_verify(body=body, headers=headers, as_of=as_of)
    except SignatureInvalid as refused:
        error = f"rejected: {refused.reason}"
    event_id = provider.webhook_event_id(body=body) if not error else None
    if event_id is None and not error:
        error = "rejected: no event id"
    if error or event_id is None:
        _webhook_reject(
            provider=provider.name, reason=error, body=body, address=address, as_of=as_of
        )
        return WebhookOutcome(400, error)
    row_id = _webhook_store(
        provider=provider.name,
        event_id=event_id,
        body=body,
        signature=signature,
        verified=True,
        error="",
        as_of=as_of,
    )
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=row_id)
        if event.processed_at is not None:
            return WebhookOutcome(200, "duplicate")
        if not event.verified:  # a forged copy came first: keep the genuine delivery
            event.body = body.decode("utf-8", errors="replace")
            event.signature = signature[:300]
            event.verified = True
        try:
            payload = provider.webhook_parse(body=body)
        except (ValueError, KeyError, TypeError) as bad:
            event.error = f"unreadable: {bad}"[:300]
            event.save(update_fields=["body", "signature", "verified", "error"])
            return WebhookOutcome(400, "unreadable event")
        event.event_type = payload.event_type[:64]
        try:
            with transaction.atomic():
                result = _webhook_apply(
                    provider=provider, payload=payload, actor=actor, as_of=as_of
                )
        except TopUpError as refused:
            event.error = str(refused.message)[:300]
            event.save(update_fields=["body", "signature", "verified", "event_type", "error"])
            return WebhookOutcome(200, f"error: {event.error}")
        event.error = ""
        event.processed_at = as_of
        event.save(
            update_fields=["body", "signature", "verified", "event_type", "error", "processed_at"]
        )
        return WebhookOutcome(200, result)


def _webhook_apply(
    *, provider: PaymentProvider, payload: WebhookPayload, actor: Actor, as_of: dt.datetime
) -> str:
    if payload.state is None:
        return "ignored"
    topup = topup_by_reference(reference=payload.reference)
    if topup is None or topup.provider != provider.name:
        raise TopUpError(_("The event names no top-up of this provider."))
    if payload.state == PaymentState.PAID:
        credited = topup_settle_paid(
            topup_id=topup.pk,
            provider_ref=payload.provider_ref,
            amount=payload.amount if payload.amount is not None else -1,
            currency=payload.currency,
            actor=actor,
            as_of=as_of,
        )
        return "credited" if credited else "already credited"
    if payload.state == PaymentState.FAILED:
        failed = topup_settle_failed(
            topup_id=topup.pk, reason="declined at the provider", actor=actor, as_of=as_of
        )
        return "failed" if failed else "already settled"
    return "pending"


# --- Reconciliation -----------------------------------------------------------------------


@dataclass
class ReconcileReport:
    """What one reconciliation run did."""

    checked: int = 0
    credited: int = 0
    failed: int = 0
    open: int = 0
    errors: int = 0


def topups_reconcile(
    *,
    actor: Actor,
    as_of: dt.datetime,
    provider_for: Callable[[str], PaymentProvider] = provider_get,
    limit: int = 200,
) -> ReconcileReport:
    """Ask the providers about top-ups whose outcome was not heard, and settle them.

    One transaction per top-up (each settle locks only its top-up). Unknown top-ups are asked
    at once, pending ones after ten minutes of silence, created ones after an hour. Top-ups
    still open are asked again on the next run; those the provider never saw fail after
    TOPUP_EXPIRY. A provider that times out again leaves its top-ups as they are.
    """
    report = ReconcileReport()
    for topup_id in topups_to_reconcile(as_of=as_of, limit=limit):
        report.checked += 1
        result = _check(
            topup=TopUp.objects.get(pk=topup_id),
            actor=actor,
            as_of=as_of,
            provider_for=provider_for,
        )
        if result == "credited":
            report.credited += 1
        elif result == "failed":
            report.failed += 1
        elif result == "error":
            report.errors += 1
        else:
            report.open += 1
    return report


def topup_check(
    *,
    topup: TopUp,
    actor: Actor,
    as_of: dt.datetime,
    provider_for: Callable[[str], PaymentProvider] = provider_get,
) -> TopUp:
    """Ask the provider now about one open top-up (the resident's "check again") and settle
    it as reconciliation would; a settled top-up is returned as it is."""
    if topup.status in _OPEN:
        _check(topup=topup, actor=actor, as_of=as_of, provider_for=provider_for)
    return TopUp.objects.get(pk=topup.pk)


def _check(
    *,
    topup: TopUp,
    actor: Actor,
    as_of: dt.datetime,
    provider_for: Callable[[str], PaymentProvider],
) -> str:
    """Settle one top-up from the provider's answer; return credited/failed/open/error."""
    try:
        provider = provider_for(topup.provider)
        payment = provider.payment_status(reference=topup.public_id)
    except ProviderError:
        return "error"
    if payment.state == PaymentState.PAID:
        try:
            credited = topup_settle_paid(
                topup_id=topup.pk,
                provider_ref=payment.provider_ref,
                amount=payment.amount if payment.amount is not None else -1,
                currency=payment.currency,
                actor=actor,
                as_of=as_of,
            )
        except PaymentMismatch:
            return "error"
        return "credited" if credited else "open"
    if payment.state == PaymentState.FAILED:
        failed = topup_settle_failed(
            topup_id=topup.pk, reason="the provider reports it unpaid", actor=actor, as_of=as_of
        )
        return "failed" if failed else "open"
    if payment.state == PaymentState.PENDING and topup.status == TopUp.Status.UNKNOWN:
        _transition(
            topup_id=topup.pk,
            allowed_from=(TopUp.Status.UNKNOWN,),
            to=TopUp.Status.PENDING,
            event=AuditEvent.TOPUP_PENDING,
            actor=actor,
            as_of=as_of,
            provider_ref=payment.provider_ref,
        )
    elif payment.state == PaymentState.NOT_FOUND and as_of - topup.created_at > TOPUP_EXPIRY:
        failed = topup_settle_failed(
            topup_id=topup.pk, reason="the provider has no record of it", actor=actor, as_of=as_of
        )
        return "failed" if failed else "open"
    return "open"


# --- Refunds ------------------------------------------------------------------------------


@transaction.atomic
def topup_refund(
    *,
    topup: TopUp,
    amount: int,
    reason: str,
    idempotency_key: str,
    actor: Actor,
    as_of: dt.datetime,
    provider: PaymentProvider | None = None,
) -> JournalEntry:
    """Refund `amount` minor units of a paid top-up to the payer (staff, with a reason).

    Debits the wallet and credits the provider's clearing account; the provider is asked to
    pay it back in the same transaction. The same idempotency key again returns the first
    refund. A top-up refunded in full becomes `refunded`.

    :raises TopUpError: for an empty reason, a non-positive amount, a top-up not paid, more
        than is left of the payment, more than the wallet holds, or a refusing provider.
    """
    if not reason.strip():
        raise TopUpError(_("A refund needs a reason."))
    if amount <= 0:
        raise TopUpError(_("The refund must be more than zero."))
    locked = (
        TopUp.objects.select_for_update(of=("self",))
        .select_related("account", "wallet")
        .get(pk=topup.pk)
    )
    key = f"{topup_refund_key_prefix(locked)}{idempotency_key.strip()}"
    earlier = JournalEntry.objects.filter(idempotency_key=key).first()
    if earlier is not None:
        return earlier
    if locked.status == TopUp.Status.REFUNDED:
        raise TopUpError(_("This top-up has been refunded in full already."))
    if locked.status != TopUp.Status.SUCCEEDED:
        raise TopUpError(_("Only a paid top-up can be refunded."))
    left = locked.amount - topup_refunded(topup=locked)
    if amount > left:
        raise TopUpError(
            _("At most %(left)s is left to refund.") % {"left": format_minor(left, locked.currency)}
        )
    wallet = Wallet.objects.select_for_update().get(pk=locked.wallet_id)
    if amount > wallet.balance:
        raise TopUpError(
            _("The wallet holds %(balance)s; credit already used cannot be refunded.")
            % {"balance": format_minor(wallet.balance, wallet.currency)}
        )
    try:
        provider = provider or provider_get(locked.provider)
        provider.refund(
            provider_ref=locked.provider_ref, amount=amount, currency=locked.currency, key=key
        )
    except ProviderError as refused:
        raise TopUpError(
            _("The payment provider refused the refund: %(error)s") % {"error": refused}
        ) from None
    clearing = _clearing(locked.provider, locked.currency)
    entry, _new = journal_post(
        kind=JournalEntry.Kind.REFUND,
        currency=locked.currency,
        memo=f"refund of top-up {locked.public_id}: {reason.strip()}",
        idempotency_key=key,
        postings=[(wallet.ledger_account_id, amount), (clearing.pk, -amount)],
        effective_date=_local_day(locked.account, as_of),
        created_by_label=actor.label,
        as_of=as_of,
        account_id=locked.account_id,
    )
    if amount == left:
        locked.status = TopUp.Status.REFUNDED
    locked.updated_at = as_of
    locked.save(update_fields=["status", "updated_at"])
    audit_record(
        actor=actor,
        event=AuditEvent.TOPUP_REFUNDED,
        account=locked.account,
        target=locked,
        data={
            "number": locked.account.number,
            "amount": format_minor(amount, locked.currency),
            "paid": format_minor(locked.amount, locked.currency),
            "reason": reason.strip()[:300],
            "entry": entry.pk,
        },
    )
    return entry
