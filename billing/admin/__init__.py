"""Billing in the Django admin, one module per domain."""

from billing.admin import bills, ledger, payments, tariffs, warnings

__all__ = ["bills", "ledger", "payments", "tariffs", "warnings"]
