"""Billing's Celery tasks, one module per domain (Celery autodiscovers this package)."""

from billing.tasks import bills, charging, exports, payments, warnings

__all__ = ["bills", "charging", "exports", "payments", "warnings"]
