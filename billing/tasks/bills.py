"""Celery tasks: bills."""
