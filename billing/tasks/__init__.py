"""Billing's Celery tasks, one module per domain (Celery autodiscovers this package)."""

from billing.tasks import bills, charging, payments, warnings

__all__ = ["bills", "charging", "payments", "warnings"]
