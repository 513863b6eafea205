"""Domain errors of the billing app; messages are fit to show the person who caused them."""

from __future__ import annotations

from portal.lib.errors import DomainError


class BillingError(DomainError):
    """Base class of the billing app's refusals."""


class BillError(BillingError):
    """A bill that cannot be created, issued, paid or voided; the message says why."""
