"""Celery tasks: warnings."""
