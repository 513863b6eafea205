"""Billing in the Django admin, one module per domain."""

from billing.admin import bills, exports, ledger, payments, tariffs, warnings

__all__ = ["bills", "exports", "ledger", "payments", "tariffs", "warnings"]
