"""The sandbox provider: a checkout page inside the portal that pays nothing real.

It behaves like a hosted payment provider, so every path of the top-up services is exercised
without one: the resident is sent to its checkout page (`billing:sandbox_checkout`), chooses
"Pay" or "Decline", and the sandbox then sends a signed webhook to the portal's webhook
endpoint from the server (never from the browser, which could forge it). Its own record of the
payments it has seen (what a real provider keeps on its side) lives in the cache for a week,
so reconciliation can ask it about a top-up whose outcome was not heard.

Signatures follow the common scheme of hosted providers: the header
`Sandbox-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>` with the key
PAYMENT_SANDBOX_SECRET. A signature older (or newer) than five minutes is refused, so a
captured webhook cannot be replayed later; redeliveries are signed anew.

A top-up whose amount ends in 408 minor units (e.g. 1.408 or 408) simulates a provider that
started the checkout but whose answer timed out, to show the `unknown` path by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from django.core.cache import cache
from django.urls import reverse

from billing.payments.base import (
    Checkout,
    PaymentProvider,
    PaymentState,
    ProviderError,
    ProviderPayment,
    ProviderTimeout,
    SignatureInvalid,
    WebhookPayload,
)

SIGNATURE_HEADER = "Sandbox-Signature"
TOLERANCE = dt.timedelta(minutes=5)
_STATE_TTL = 7 * 24 * 3600
_TIMEOUT_TRIGGER = 408
_EVENT_STATES = {
    "payment.succeeded": PaymentState.PAID,
    "payment.failed": PaymentState.FAILED,
}


def _state_key(reference: uuid.UUID | str) -> str:
    return f"payments:sandbox:{reference}"


class SandboxProvider(PaymentProvider):
    """The local provider of development, demos and tests (see the module docstring)."""

    name = "sandbox"

    def __init__(self, *, secret: str) -> None:
        if not secret:
            raise ValueError("the sandbox provider needs a signing secret")
        self._secret = secret.encode()

    # --- What the portal asks ---------------------------------------------------------------

    def checkout_start(
        self,
        *,
        reference: uuid.UUID,
        account_reference: uuid.UUID,
        amount: int,
        currency: str,
        as_of: dt.datetime,
    ) -> Checkout:
        record = self._record(reference)
        if record is None:
            record = {
                "payment": f"sbx_{uuid.uuid4().hex}",
                "state": PaymentState.PENDING.value,
                "amount": amount,
                "currency": currency,
                "refunded": 0,
                "refunds": {},
            }
            self._save(reference, record)
        elif record["amount"] != amount or record["currency"] != currency:
            raise ProviderError("the reference was used for another amount")
        if amount % 1000 == _TIMEOUT_TRIGGER:
            raise ProviderTimeout("sandbox: simulated timeout after the checkout was created")
        return Checkout(
            provider_ref=record["payment"],
            redirect_url=self.checkout_url(
                reference=reference, account_reference=account_reference
            ),
        )

    def checkout_url(self, *, reference: uuid.UUID, account_reference: uuid.UUID) -> str:
        return reverse(
            "billing:sandbox_checkout",
            kwargs={"account_id": account_reference, "topup_id": reference},
        )

    def payment_status(self, *, reference: uuid.UUID) -> ProviderPayment:
        record = self._record(reference)
        if record is None:
            return ProviderPayment(state=PaymentState.NOT_FOUND)
        return ProviderPayment(
            state=PaymentState(record["state"]),
            provider_ref=record["payment"],
            amount=record["amount"],
            currency=record["currency"],
        )

    def refund(self, *, provider_ref: str, amount: int, currency: str, key: str) -> str:
        reference = cache.get(f"payments:sandbox:payment:{provider_ref}")
        record = self._record(reference) if reference else None
        if record is None or record["state"] != PaymentState.PAID.value:
            raise ProviderError("sandbox: no paid payment with this id")
        if record["currency"] != currency:
            raise ProviderError("sandbox: the refund is in another currency")
        if key in record["refunds"]:
            return str(record["refunds"][key])
        if record["refunded"] + amount > record["amount"]:
            raise ProviderError("sandbox: the refund is larger than what is left of the payment")
        refund_id = f"sbr_{uuid.uuid4().hex}"
        record["refunded"] += amount
        record["refunds"][key] = refund_id
        self._save(reference, record)
        return refund_id

    def webhook_event_id(self, *, body: bytes) -> str | None:
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        event_id = event.get("id") if isinstance(event, dict) else None
        return event_id if isinstance(event_id, str) and 0 < len(event_id) <= 120 else None

    def webhook_verify(self, *, body: bytes, headers: Mapping[str, str], as_of: dt.datetime) -> str:
        header = headers.get(SIGNATURE_HEADER, "")
        if not header:
            raise SignatureInvalid("missing signature")
        parts = dict(
            item.split("=", 1) for item in header.split(",") if "=" in item and item.strip()
        )
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise SignatureInvalid("malformed signature") from None
        presented = parts.get("v1", "")
        if not hmac.compare_digest(presented, self._sign(body, timestamp)):
            raise SignatureInvalid("bad signature")
        if abs(as_of.timestamp() - timestamp) > TOLERANCE.total_seconds():
            raise SignatureInvalid("stale signature")
        return header[:300]

    def webhook_parse(self, *, body: bytes) -> WebhookPayload:
        event = json.loads(body)
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            raise ValueError("not a sandbox event")
        data: dict[str, Any] = event["data"]
        amount = data.get("amount")
        if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool)):
            raise ValueError("the amount is not whole minor units")
        event_type = str(event.get("type", ""))
        return WebhookPayload(
            event_id=str(event["id"]),
            event_type=event_type,
            state=_EVENT_STATES.get(event_type),
            reference=str(data.get("reference", "")),
            provider_ref=str(data.get("payment", "")),
            amount=amount,
            currency=str(data.get("currency", "")),
        )

    # --- The provider's side: the checkout page's outcome and its webhook ---------------------

    def checkout_complete(
        self, *, reference: uuid.UUID, paid: bool, as_of: dt.datetime
    ) -> tuple[bytes, dict[str, str]]:
        """Record the resident's choice on the checkout page; return the signed webhook.

        A checkout is decided once: choosing again (a double click, the back button) returns
        the same event, whose id the portal has already seen.

        :raises ProviderError: for a reference with no checkout.
        """
        record = self._record(reference)
        if record is None:
            raise ProviderError("sandbox: no checkout for this reference")
        if record["state"] == PaymentState.PENDING.value:
            record["state"] = (PaymentState.PAID if paid else PaymentState.FAILED).value
            self._save(reference, record)
        return self.webhook_for(reference=reference, as_of=as_of)

    def webhook_for(
        self, *, reference: uuid.UUID, as_of: dt.datetime
    ) -> tuple[bytes, dict[str, str]]:
        """Build the signed webhook of a decided checkout (as a redelivery would send it)."""
        record = self._record(reference)
        if record is None or record["state"] == PaymentState.PENDING.value:
            raise ProviderError("sandbox: the checkout is not decided")
        paid = record["state"] == PaymentState.PAID.value
        event_type = "payment.succeeded" if paid else "payment.failed"
        event = {
            "id": f"evt_{record['payment'].removeprefix('sbx_')}_{'paid' if paid else 'failed'}",
            "type": event_type,
            "created": int(as_of.timestamp()),
            "data": {
                "payment": record["payment"],
                "reference": str(reference),
                "amount": record["amount"],
                "currency": record["currency"],
            },
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        return body, self.signed_headers(body=body, as_of=as_of)

    def signed_headers(self, *, body: bytes, as_of: dt.datetime) -> dict[str, str]:
        """The headers the sandbox sends with `body` at `now`."""
        timestamp = int(as_of.timestamp())
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: f"t={timestamp},v1={self._sign(body, timestamp)}",
        }

    def _sign(self, body: bytes, timestamp: int) -> str:
        return hmac.new(self._secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()

    def _record(self, reference: uuid.UUID | str) -> dict[str, Any] | None:
        record: dict[str, Any] | None = cache.get(_state_key(reference))
        return record

    def _save(self, reference: uuid.UUID | str, record: dict[str, Any]) -> None:
        cache.set(_state_key(reference), record, _STATE_TTL)
        cache.set(f"payments:sandbox:payment:{record['payment']}", str(reference), _STATE_TTL)


def webhook_post(
    *,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,  # not money
) -> bool:
    """POST a webhook to `url`; return whether it answered 2xx (False when unreachable)."""
    if not url.startswith(("http://", "https://")):
        return False
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, TimeoutError, OSError):
        return False
