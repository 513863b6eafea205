"""Celery tasks: payments."""
