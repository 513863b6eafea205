"""The interface of a payment provider, and the values it answers with.

A provider is asked three things by the top-up services and nothing else: start a checkout for
a top-up (`checkout_start`), tell the status of the payment of a top-up (`payment_status`, used
by reconciliation for top-ups whose outcome we did not hear), and refund part of a payment.
Its webhooks are verified and parsed by the provider too (`webhook_verify`, `webhook_parse`),
because each provider signs and shapes them its own way.

Every top-up is known to the provider by our `reference` (the top-up's public id), given when
the checkout starts; the provider's own id of the payment (`provider_ref`) comes back with it.
Status lookups use our reference, so a checkout whose answer was lost (a timeout) can still be
found.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass


class ProviderError(Exception):
    """The provider refused or failed the request; it certainly did not take the payment."""


class ProviderTimeout(ProviderError):
    """The provider did not answer in time: whether it acted is unknown (ask it later)."""


class ProviderUnavailable(ProviderError):
    """No such provider is configured here."""


class SignatureInvalid(Exception):
    """A webhook's signature is missing, malformed, wrong or too old; `reason` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PaymentState(enum.StrEnum):
    """A payment's state as the provider sees it."""

    PENDING = "pending"  # checkout started, not paid yet
    PAID = "paid"
    FAILED = "failed"  # declined, abandoned or expired at the provider
    NOT_FOUND = "not_found"  # the provider never saw this reference


@dataclass(frozen=True)
class Checkout:
    """A started checkout: the provider's payment id and where to send the resident."""

    provider_ref: str
    redirect_url: str


@dataclass(frozen=True)
class ProviderPayment:
    """What the provider says about the payment of one top-up."""

    state: PaymentState
    provider_ref: str = ""
    amount: int | None = None
    currency: str = ""


@dataclass(frozen=True)
class WebhookPayload:
    """A verified webhook, reduced to what the top-up services act on.

    `state` is None for event types the portal does not act on (they are stored and marked
    processed).
    """

    event_id: str
    event_type: str
    state: PaymentState | None
    reference: str
    provider_ref: str
    amount: int | None
    currency: str


class PaymentProvider(abc.ABC):
    """What a payment provider offers the top-up services. Amounts are minor units."""

    name: str

    @abc.abstractmethod
    def checkout_start(
        self,
        *,
        reference: uuid.UUID,
        account_reference: uuid.UUID,
        amount: int,
        currency: str,
        as_of: dt.datetime,
    ) -> Checkout:
        """Start the payment of a top-up and return where the resident pays.

        :raises ProviderTimeout: when the provider did not answer (it may have started it).
        :raises ProviderError: when it refused.
        """

    @abc.abstractmethod
    def checkout_url(self, *, reference: uuid.UUID, account_reference: uuid.UUID) -> str:
        """Return the page where the resident pays a checkout started earlier."""

    @abc.abstractmethod
    def payment_status(self, *, reference: uuid.UUID) -> ProviderPayment:
        """Ask the provider about the payment of the top-up `reference`.

        :raises ProviderTimeout: when it did not answer.
        """

    @abc.abstractmethod
    def refund(self, *, provider_ref: str, amount: int, currency: str, key: str) -> str:
        """Refund `amount` of a paid payment; the same `key` again refunds nothing more.

        Returns the provider's id of the refund.

        :raises ProviderError: when it refused (nothing was refunded).
        """

    @abc.abstractmethod
    def webhook_event_id(self, *, body: bytes) -> str | None:
        """Read the provider's event id from a raw body (before verification), if any."""

    @abc.abstractmethod
    def webhook_verify(self, *, body: bytes, headers: Mapping[str, str], as_of: dt.datetime) -> str:
        """Check the webhook's signature; return the signature header as received.

        :raises SignatureInvalid: when it is missing, wrong or stale.
        """

    @abc.abstractmethod
    def webhook_parse(self, *, body: bytes) -> WebhookPayload:
        """Read a verified webhook.

        :raises ValueError: when the body is not an event of this provider.
        """
